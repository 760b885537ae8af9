"""Noise2Void (Krull et al. 2019): random blind-spot masking, the base behaviour."""

from __future__ import annotations

from . import register
from .base import Method


@register
class N2V(Method):
    """Random pixels are replaced by a neighbour and predicted from their surroundings."""

    name = "n2v"
    listing_order = 10
    label = "N2V"
    short_label = "N2V"
    summary = "Noise2Void: hides random pixels and learns to predict them (the classic)"
    citation = ("Krull, Buchholz, Jug. Noise2Void - Learning Denoising from Single Noisy "
                "Images. CVPR 2019")
