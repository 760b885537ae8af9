"""Networks: the shared U-Net backbone and the Laine et al. blind-spot network."""

from __future__ import annotations

from torch import nn

from n2v_cascade.models.blindspot import BlindSpotNet
from n2v_cascade.models.unet import UNet

__all__ = ["BlindSpotNet", "UNet", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (fixed buffers such as the blur kernel excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
