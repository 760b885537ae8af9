"""Sample data: the bundled demo image (``skimage.data.cell()``) with the demo's noise."""

from __future__ import annotations

from typing import Any


def noisy_cell() -> list[tuple[Any, dict[str, Any]]]:
    """The noisy cell image of ``n2v-cascade demo`` (Gaussian sigma 25, seed 0) as a layer."""
    from ..demo import DEMO_NOISE, demo_image
    from ..noise import add_noise, parse_noise_spec

    noisy = add_noise(demo_image(), parse_noise_spec(DEMO_NOISE), seed=0)
    return [(noisy, {"name": "noisy cell", "colormap": "gray"})]
