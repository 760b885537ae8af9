"""N2V2 (Hoeck et al. 2022): blur-pool, no top skip connection, median replacement."""

from __future__ import annotations

from typing import Any

from . import register
from .base import Method


@register
class N2V2(Method):
    """N2V with the architecture changes that remove its checkerboard artefacts.

    Its learning rate is 3e-4: at 1e-3 it drifted in intensity on real microscope frames
    (docs/DECISIONS.md).
    """

    name = "n2v2"
    listing_order = 20
    label = "N2V2"
    short_label = "N2V2"
    summary = "N2V2: N2V without checkerboard artefacts (blur-pool, median replacement)"
    citation = ("Hoeck, Buchholz, Jug et al. N2V2 - Fixing Noise2Void Checkerboard "
                "Artifacts with Modified Sampling Strategies and a Tweaked Network "
                "Architecture. ECCV Workshops 2022")
    defaults = {"learning_rate": 3e-4, "mask": {"replacement": "median"}}

    def unet_options(self) -> dict[str, Any]:
        return {"blurpool": True, "top_skip": False}
