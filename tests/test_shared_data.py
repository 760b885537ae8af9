"""Cross-checks against the shared benchmark data (skipped when it is not present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from n2v_cascade.io import read_image
from n2v_cascade.metrics import psnr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FMD = DATA / "fmd_testset"

needs_fmd = pytest.mark.skipif(not FMD.is_dir(),
                               reason=f"shared FMD data not found at {FMD}")


@needs_fmd
def test_fmd_noisy_psnr_matches_published_table() -> None:
    # SOURCE.md lists 22.86 dB as the mean noisy PSNR of the four Confocal_FISH frames
    values = [psnr(read_image(FMD / "raw" / f"Confocal_FISH_{i}.png"),
                   read_image(FMD / "gt" / f"Confocal_FISH_{i}.png"), 255.0)
              for i in range(1, 5)]
    assert np.mean(values) == pytest.approx(22.86, abs=0.01)
