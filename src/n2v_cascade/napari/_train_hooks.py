"""Training with a time limit and per-step callbacks, for the training widget.

The core's ``train()`` is getting the keyword arguments ``time_limit`` (seconds) and
``callbacks`` (called after every step with a :class:`StepInfo`; returning True stops
training cleanly: checkpoint written, the model returned with the weights so far). When
the installed ``train()`` takes them they are passed straight on; until then a shim
emulates exactly that interface around the current loop (``_Loop.run``/``_Loop._step``)
and is dropped once the hooks are on main.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import train as train_module
from ..config import TrainConfig
from ..model import Model


@dataclass(frozen=True)
class StepInfo:
    """What a callback sees after every training step."""

    step: int  # global step, 1-based
    total_steps: int
    epoch: int  # 1-based
    loss: float
    seconds: float


Callback = Callable[[StepInfo], "bool | None"]


def train_with_hooks(
    images: object, config: TrainConfig, *, output_dir: str | Path,
    time_limit: float | None = None, callbacks: Sequence[Callback] = (),
    overwrite: bool = False,
) -> Model:
    """``train(images, config, ...)`` stopping after ``time_limit`` s or when a callback says so."""
    train = train_module.train
    if "callbacks" in inspect.signature(train).parameters:
        return train(images, config, output_dir=output_dir, overwrite=overwrite,
                     progress=False, time_limit=time_limit, callbacks=list(callbacks))
    with _hooked_loop(time_limit, list(callbacks)):
        return train(images, config, output_dir=output_dir, overwrite=overwrite,
                     progress=False)


class _Stop(Exception):
    """Raised out of a step to end the epoch loop early (caught in the patched run)."""


_LOCK = threading.Lock()  # the shim patches a class: one hooked training at a time


@contextlib.contextmanager
def _hooked_loop(time_limit: float | None, callbacks: list[Callback]) -> Iterator[None]:
    loop_cls = train_module._Loop
    run, step = loop_cls.run, loop_cls._step
    ctx: dict = {}

    def hooked_run(self, steps, val_batches, interrupted, progress):
        state = self.state
        ctx.update(steps=steps, done=state["epoch"] * steps + state["step"],
                   t0=time.perf_counter(), seconds0=state["seconds"])
        try:
            return run(self, steps, val_batches, interrupted, progress)
        except _Stop:
            state.update(step=ctx["done"] - state["epoch"] * steps, partial_losses=[])
            state["seconds"] = ctx["seconds0"] + time.perf_counter() - ctx["t0"]
            self._checkpoint()

    def hooked_step(self):
        loss = step(self)
        ctx["done"] += 1
        elapsed = ctx["seconds0"] + time.perf_counter() - ctx["t0"]
        info = StepInfo(step=ctx["done"], total_steps=self.config.epochs * ctx["steps"],
                        epoch=self.state["epoch"] + 1, loss=float(loss), seconds=elapsed)
        stop = [bool(cb(info)) for cb in callbacks]
        if any(stop) or (time_limit is not None and elapsed >= time_limit):
            raise _Stop
        return loss

    with _LOCK:
        loop_cls.run, loop_cls._step = hooked_run, hooked_step
        try:
            yield
        finally:
            loop_cls.run, loop_cls._step = run, step
