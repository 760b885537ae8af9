"""Networks: the shared U-Net backbone and the Laine et al. blind-spot network."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from torch import nn

from n2v_cascade.errors import InputError
from n2v_cascade.models.blindspot import BlindSpotNet
from n2v_cascade.models.unet import UNet

__all__ = ["BlindSpotNet", "UNet", "build_network", "count_parameters", "fast_layout"]

_NETWORKS: dict[str, type[nn.Module]] = {"unet": UNet, "blindspot": BlindSpotNet}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (fixed buffers such as the blur kernel excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_network(kind: Literal["unet", "blindspot"], **kwargs: Any) -> nn.Module:
    """Build a network by name, so configs can select it with a string.

    Parameters
    ----------
    kind
        ``"unet"`` (:class:`UNet`) or ``"blindspot"`` (:class:`BlindSpotNet`).
    **kwargs
        Constructor arguments of that class.

    Raises
    ------
    InputError
        Unknown ``kind`` or an option the chosen network does not take.
    """
    if kind not in _NETWORKS:
        raise InputError(f"unknown network kind {kind!r}; choose from {sorted(_NETWORKS)}")
    cls = _NETWORKS[kind]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise InputError(
            f"network {kind!r} does not take option(s) {unknown}; valid: {sorted(accepted)}"
        )
    return cls(**kwargs)


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last layout for 2-D batches (faster CPU convolutions); 3-D left as is."""
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
