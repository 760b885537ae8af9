"""Laine et al. (2019) blind-spot network: no masking, the loss on every pixel."""

from __future__ import annotations

from . import register
from .base import Method


@register
class BlindSpot(Method):
    """The network is built so that it cannot see the pixel it predicts.

    Its blind radius is chosen from the training images (``auto``: white noise gives
    0, the pixel alone) and it predicts a correction to the mean of the ring around
    its blind spot (``network.ring_residual``).
    """

    name = "blindspot"
    listing_order = 40
    label = "Blind-Spot N2V"
    short_label = "Blind-Spot"
    summary = "blind-spot network (Laine et al.): never sees the pixel, learns on all pixels"
    citation = ("Laine, Karras, Lehtinen, Aila. High-Quality Self-Supervised Deep Image "
                "Denoising. NeurIPS 2019")
    backbone = "blindspot"
    # a blind-spot step costs several U-Net steps, so fewer default epochs (docs/DECISIONS.md)
    defaults = {"epochs": 10, "network": {"blind_radius": "auto", "ring_residual": True}}
