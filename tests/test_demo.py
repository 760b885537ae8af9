"""The bundled demo (a tiny budget on a crop) and the figure's zoom box."""

from __future__ import annotations

import json

import numpy as np
import pytest

from n2v_cascade.demo import run_demo
from n2v_cascade.errors import OutputExistsError
from n2v_cascade.figures import _zoom_box, comparison_figure

TINY = {"patch_size": 16, "batch_size": 4, "steps_per_epoch": 2,
        "network": {"depth": 2, "width": 8}, "mask": {"fraction": 0.02}}


def test_demo_runs_the_cascade_and_writes_everything(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, epochs=1, retrain_epochs=1, crop=64, base=TINY, progress=False)
    for name in ("comparison.png", "metrics.md", "metrics.json", "cascade.json", "clean.tif",
                 "noisy.tif", "stage1-structured/cell.tif", "stage2-probabilistic/cell.tif",
                 "stage2-probabilistic/cell_std.tif", "stage2-probabilistic/model/model.json"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["image"] for r in rows] == ["noisy", "stage1-structured", "stage2-probabilistic"]
    assert all(r["gt_free"] > 0 and r["gt_free_se"] > 0 for r in rows[1:])
    text = (out / "metrics.md").read_text()
    assert "gt_free_vs_best" in text.splitlines()[0] and "| lowest " in text
    # the stage to keep is named only when the scores tell the stages apart
    tied = result["manifest"]["indistinguishable_from_best"]
    assert ("are indistinguishable" in text) == bool(tied)
    assert ("Lowest GT-free score: stage" in text) == (not tied)
    assert capsys.readouterr().out == ""  # progress=False (the CLI's -q): nothing printed
    assert result["manifest"]["stages"][1]["input"] == "stage1-structured"
    with pytest.raises(OutputExistsError):
        run_demo(out, epochs=1, retrain_epochs=1, crop=64, base=TINY, progress=False)


def test_zoom_box_lands_on_structure(tmp_path) -> None:
    img = np.zeros((96, 120), np.float32)
    img[70:90, 5:30] = np.random.default_rng(0).random((20, 25))  # texture, lower left
    ys, xs = _zoom_box(img)
    assert ys.stop - ys.start == 24 and xs.stop - xs.start == 30
    assert ys.start < 90 and ys.stop > 70 and xs.start < 30  # overlaps the textured patch
    path = comparison_figure(tmp_path / "f.png", [("a", img), ("b", img)])
    assert path.stat().st_size > 1000
