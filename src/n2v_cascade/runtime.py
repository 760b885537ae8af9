"""The one place that knows devices: which device, its precision and memory layout.

Everything else takes a ``device`` argument and calls these helpers, so a recipe never
names a device: a model trained on a GPU loads, predicts and resumes on a CPU.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError

#: Where saved tensors are mapped on load and where arrays come back to: host memory.
HOST = torch.device("cpu")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``auto``/None picks CUDA, then MPS, then the CPU.

    An explicit device that is not available gives a one-line error naming it.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return HOST
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device: unknown device {device!r} (use one of "
                         f"{', '.join(DEVICE_CHOICES)})") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA GPU is available here")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if chosen.type == "mps" and not _mps_available():
        raise InputError(f"--device {name}: Apple MPS is not available here")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device: unsupported device {device!r}")
    return chosen


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: bfloat16 autocast when asked for."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype active for ``x``'s device, or None when autocast is off."""
    kind = x.device.type
    if kind in (HOST.type, "cuda") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last strides for 2-D batches (the fast convolution path); 3-D as is."""
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def place(network: nn.Module, device: torch.device) -> nn.Module:
    """Move a network to ``device`` in its fast layout (channels-last for 2-D weights)."""
    return network.to(device=device, memory_format=torch.channels_last)


def load(path: str | Path, *, weights_only: bool = True) -> Any:
    """``torch.load`` onto host memory, whatever device the tensors were saved from."""
    return torch.load(path, map_location=HOST, weights_only=weights_only)


def host_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """A network's state dict on host memory (what is saved: loads on any device)."""
    return {k: v.detach().to(HOST) for k, v in network.state_dict().items()}



class Runner:
    """Runs a network on its device: moves inputs there, in the fast layout and the
    chosen precision, and hands float32 outputs back on that device."""

    def __init__(self, network: nn.Module, device: torch.device, precision: str = "float32"):
        self.network, self.device, self.precision = network, device, precision

    def put(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """``x`` on the network's device (None stays None)."""
        return None if x is None else x.to(self.device, non_blocking=True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.precision):
            return self.network(fast_layout(self.put(x))).float()
