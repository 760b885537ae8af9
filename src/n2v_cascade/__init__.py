"""n2v-cascade: self-supervised Noise2Void denoising with progressive retraining cascades."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
