"""Structured masking: a grid of masked pixels, optionally with structN2V line masks."""

from __future__ import annotations

from . import register
from .base import Method


@register
class Structured(Method):
    """Masks a lattice of pixels (random phase per patch); ``mask.struct`` adds the
    structN2V line neighbourhood for noise correlated along rows or columns."""

    name = "structured"
    listing_order = 30
    label = "Structured N2V"
    short_label = "Structured"
    summary = ("grid masking (the default method); with --mask horizontal:N / vertical:N "
               "it is structN2V, for stripe-like noise")
    citation = ("Broaddus, Krull, Weigert, Schmidt, Myers. Removing Structured Noise with "
                "Self-Supervised Blind-Spot Networks. ISBI 2020")
    defaults = {"mask": {"pattern": "grid"}}
