"""The one place that knows devices: which device, its precision and memory layout.

Everything else takes a ``device`` argument and calls these helpers, so a recipe never
names a device: a model trained on a GPU loads, predicts and resumes on a CPU.
"""

from __future__ import annotations

import contextlib
import functools
import time
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


def describe_device(device: torch.device) -> str:
    """A few words on the device, for the settings line (``cpu, 2 threads``)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == HOST.type:
        return f"cpu, {torch.get_num_threads()} threads"
    return str(device)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def distributed_backend(device: torch.device) -> str:
    """The torch.distributed backend for training processes on ``device``: gloo on CPUs,
    nccl on CUDA GPUs (one GPU per process)."""
    if device.type == "cuda":
        return "nccl"
    if device.type == HOST.type:
        return "gloo"
    raise InputError(f"training with several processes needs CPUs or CUDA GPUs, not "
                     f"{device.type}; use --device cpu")


def process_device(device: torch.device, local_rank: int, local_processes: int
                   ) -> torch.device:
    """The device of local training process ``local_rank``: on CUDA its own GPU
    (``cuda:local_rank``, made current); on the CPU the CPU."""
    if device.type != "cuda":
        return device
    if local_processes > torch.cuda.device_count():
        raise InputError(f"{local_processes} training processes on CUDA need as many GPUs; "
                         f"this machine has {torch.cuda.device_count()} (use --device cpu "
                         f"or fewer processes)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


#: A lower precision is chosen by ``auto`` only when it makes a training step this much faster.
MIN_SPEEDUP = 1.2


def choose_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """Resolve ``auto`` to the precision that trains fastest on ``device``; say why.

    CUDA GPUs that support bfloat16 get it. On a CPU, asking torch is not enough (CPUs
    without native bfloat16 instructions emulate it and run slower), so one small
    convolution step is timed in both precisions, once per process.
    """
    if precision != "auto":
        return precision, "as asked"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "this GPU supports it"
        return "float16", "this GPU has no bfloat16; float16 with loss scaling"
    if device.type != HOST.type:
        return "float32", f"mixed precision is not used on {device.type}"
    speedup = cpu_bfloat16_speedup()
    if speedup >= MIN_SPEEDUP:
        return "bfloat16", f"{speedup:.1f}x faster than float32 on this CPU"
    return "float32", f"bfloat16 runs at {speedup:.1f}x the float32 speed on this CPU"


@functools.lru_cache(maxsize=1)
def cpu_bfloat16_speedup() -> float:
    """float32 time / bfloat16 time of a small convolution training step on the CPU.

    The global random state is left as it was (the probe's weights are throwaway).
    """
    with torch.random.fork_rng(devices=[]):
        net = place(nn.Sequential(*[m for _ in range(3) for m in
                                    (nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())]), HOST)
        x = fast_layout(torch.randn(4, 32, 32, 32))

        def best(precision: str) -> float:
            times = []
            for _ in range(6):  # the fastest of several: a busy CPU slows single runs
                t0 = time.perf_counter()
                with autocast(HOST, precision):
                    out = net(x).float()
                out.square().mean().backward()
                times.append(time.perf_counter() - t0)
            return min(times[1:])  # the first run includes one-off setup

        try:
            return best("float32") / best("bfloat16")
        except RuntimeError:  # no bfloat16 kernels at all
            return 0.0


#: The autocast dtype of each reduced precision (float32: no autocast).
HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: autocast to bfloat16 or float16 when asked
    for (float16 training also scales the loss: :func:`grad_scaler`)."""
    return torch.autocast(device.type, dtype=HALF.get(precision, torch.bfloat16),
                          enabled=precision in HALF)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for float16 training (its gradients underflow without it); a
    pass-through for the other precisions."""
    return torch.amp.GradScaler(device.type, enabled=precision == "float16")


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype active for ``x``'s device, or None when autocast is off."""
    kind = x.device.type
    if kind in (HOST.type, "cuda") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


#: The fast convolution layout by tensor rank: channels-last strides for 2-D (NCHW) and
#: 3-D (NCDHW) batches and weights (oneDNN and cuDNN then skip reordering every
#: convolution's input; measured in docs/DECISIONS.md, "Channels-last").
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _layout(rank: int, device: torch.device, half: bool) -> torch.memory_format | None:
    """The layout for tensors of ``rank``, or None (as they are). On the CPU, 3-D in a
    reduced precision stays contiguous: oneDNN's bfloat16 3-D convolutions with
    channels-last weights give non-finite gradients now and then (torch 2.13,
    docs/DECISIONS.md)."""
    if rank == 5 and half and device.type == HOST.type:
        return None
    return _CHANNELS_LAST.get(rank)


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the fast layout for its rank and the autocast in force."""
    fmt = _layout(x.ndim, x.device, autocast_dtype(x) in HALF.values())
    return x if fmt is None else x.contiguous(memory_format=fmt)


def place(network: nn.Module, device: torch.device, precision: str = "float32") -> nn.Module:
    """Move a network to ``device`` in the fast layout of its convolution weights for
    ``precision`` (the one it will run in)."""
    ranks = {p.ndim for p in network.parameters()} & set(_CHANNELS_LAST)
    fmt = _layout(max(ranks), torch.device(device), precision in HALF) if ranks else None
    return network.to(device=device, memory_format=fmt or torch.contiguous_format)


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
