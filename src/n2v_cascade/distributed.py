"""Several processes training one model with DistributedDataParallel (DDP).

The training loop is the same for one process and for N; it meets this module through a
:class:`Session`, whose methods do nothing for a single process. The rules:

* ``batch_size`` is the global batch: each of N processes draws ``batch_size / N``
  patches per step (refused unless it divides), DDP averages the gradients, and the
  learning rate is not scaled, so N processes train the recipe of one.
* Process r draws its patches and masks from its own generator, seeded with
  :func:`derived_seed` ``(seed, r, step)`` where ``step`` is the global step the run starts
  from (0 for a new run). A checkpoint holds every process's generator state: resuming
  with the same number of processes continues each stream exactly; with another number
  (including 1 after N, or N after 1) the streams are derived again from the seed and
  the step reached. One process on its own keeps the single-process rules (its generator
  is seeded with ``seed``), so its runs and checkpoints are unchanged.
* The reported loss of a step is the mean over the processes; the validation loss is
  computed by every process on the same fixed patches with the same (synchronised)
  weights, so no exchange is needed and it equals a single process's.
* Stopping (Ctrl-C, a callback, the time limit) is decided together: after every step
  the processes exchange their flags and all stop at the same step if any wants to, so
  none is left waiting in a gradient exchange.
* Rank 0 alone claims the folder and writes checkpoints and the model; the others wait
  for each write to finish, so a stopped run always leaves a usable checkpoint.
* The process group has a timeout (:data:`TIMEOUT_S`, ``N2V_DIST_TIMEOUT`` seconds): a
  process that loses its peers fails with a one-line error instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import N2VError
from .launch import process_env, split_batch
from .runtime import HOST, distributed_backend, process_device

#: Seconds a process waits for the others in one exchange (or to join) before failing.
TIMEOUT_S = 300.0
TIMEOUT_ENV = "N2V_DIST_TIMEOUT"
# words of torch's own messages when a peer is gone or too slow (gloo, nccl, the store)
_LOST = ("connection", "timed out", "timeout", "gloo", "nccl", "c10d", "peer", "socket")


class DistributedError(N2VError):
    """Another training process stopped or could not be reached."""


def derived_seed(seed: int, rank: int, step: int) -> int:
    """The seed of process ``rank``'s generator for a run (re)started at global ``step``."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])


def unwrap(network: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (the network itself otherwise)."""
    if isinstance(network, nn.parallel.DistributedDataParallel):
        return network.module
    return network


@dataclass
class Session:
    """This process's place in a run: rank, number of processes, and the exchanges."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = HOST

    @classmethod
    def from_env(cls) -> Session:
        """The session of this process: an existing process group, the environment of
        ``torchrun`` / ``--processes``, or a single process."""
        if dist.is_available() and dist.is_initialized():
            _, _, local, local_world = process_env()
            return cls(dist.get_rank(), dist.get_world_size(), local, local_world)
        return cls(*process_env())

    @property
    def writes(self) -> bool:
        """Whether this process writes (the folder, checkpoints, the model) and prints."""
        return self.rank == 0

    def batch(self, batch_size: int) -> int:
        """Patches this process draws per step."""
        return split_batch(batch_size, self.world)

    @contextlib.contextmanager
    def joined(self, device: torch.device) -> Iterator[torch.device]:
        """Join the other processes (a no-op for one); yield this process's device.

        A lost peer or a timeout inside becomes a :class:`DistributedError`; the process
        group is ended on the way out if it was started here.
        """
        if self.world == 1:
            yield device
            return
        backend = distributed_backend(device)
        self.device = device = process_device(device, self.local_rank, self.local_world)
        owned = not dist.is_initialized()
        try:
            if owned:
                dist.init_process_group(backend, rank=self.rank, world_size=self.world,
                                        timeout=datetime.timedelta(seconds=_timeout()))
            yield device
        except RuntimeError as exc:
            if not _lost_peer(exc):
                raise
            raise DistributedError(
                f"training process {self.rank} of {self.world} lost contact with the others "
                f"({_first_sentence(exc)}); the last checkpoint continues the run with "
                f"--resume") from exc
        finally:
            if owned and dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()

    def wrap(self, network: nn.Module) -> nn.Module:
        """The network as DDP (its gradients averaged over the processes), or itself.

        Buffers are not re-sent before every forward pass: the networks' buffers are
        constants made from the recipe (no batch statistics), the same in every process.
        A weight that is contiguous in either layout (one input channel) gets the plain
        strides, which autograd gives its gradient (DDP compares them literally).
        """
        if self.world == 1:
            return network
        ddp = nn.parallel.DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        newer = "forward_sync_buffers" in inspect.signature(ddp).parameters
        for param in network.parameters():  # e.g. (8, 1, 3, 3) channels-last weights
            if param.is_contiguous() and param.stride() != _dense_strides(param.shape):
                param.data = param.data.clone(memory_format=torch.contiguous_format)
        return ddp(network, device_ids=ids,
                   **{"forward_sync_buffers" if newer else "broadcast_buffers": False})

    def _reduce(self, values: list[float]) -> list[float]:
        """Sums over the processes of ``values``."""
        if self.world == 1:
            return values
        comm = self.device if self.device.type == "cuda" else HOST
        tensor = torch.tensor(values, dtype=torch.float64, device=comm)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes (NaN/inf anywhere stays non-finite)."""
        if self.world == 1:
            return value
        total = self._reduce([value])[0]
        return total / self.world if math.isfinite(total) else total

    def any_of(self, *flags: bool) -> list[bool]:
        """Each flag, true if it is true in any process (every process gets the same)."""
        return [v > 0 for v in self._reduce([float(bool(f)) for f in flags])]

    def from_first(self, value):
        """Rank 0's ``value`` in every process (e.g. a choice that timing made)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if
                                   self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process has got here (e.g. rank 0 has written a file)."""
        if self.world > 1:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda"
                         else None)

    # -- the random streams ------------------------------------------------------
    def checkpoint_entry(self, generator: torch.Generator) -> dict:
        """What a checkpoint needs to continue every process's stream (collective)."""
        if self.world == 1:
            return {"world_size": 1}
        states: list = [None] * self.world
        dist.all_gather_object(states, generator.get_state())
        return {"world_size": self.world, "generators": states}

    def seed_generator(self, generator: torch.Generator, seed: int, step: int,
                       saved: dict | None) -> None:
        """Set this process's stream for a run starting (``saved`` None: a new run) or
        resuming (``saved``: the checkpoint's entry) at global ``step``.

        A single process keeps its plain rules (seeded with ``seed``, or the checkpoint's
        state, already set) unless the checkpoint came from another number of processes.
        """
        saved_world = int((saved or {}).get("world_size", 1))
        if saved is None and self.world == 1:
            return
        if saved is not None and saved_world == self.world:
            if self.world > 1:
                generator.set_state(saved["generators"][self.rank])
            return
        generator.manual_seed(derived_seed(seed, self.rank, step))


def _dense_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(1, size)
    return tuple(reversed(strides))


def _timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV)
    try:
        return float(text) if text else TIMEOUT_S
    except ValueError:
        return TIMEOUT_S


def _first_sentence(exc: BaseException) -> str:
    """torch's message without its source location, up to the first full stop."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", " ".join(str(exc).split()))
    return (text.split(". ")[0] or type(exc).__name__)[:160]


def _lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.distributed saying a peer is gone or too slow."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return any(word in text for word in _LOST)
