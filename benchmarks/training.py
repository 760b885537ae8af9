"""Variant recipes and time-budgeted training through the package's training loop.

Training seconds are *CPU* seconds of the training steps divided by the number of torch
threads: on an idle machine that is the wall time of the steps, and on a shared machine
it does not count the time other processes hold the cores (this CPU is shared; with
other processes running, wall-clock budgets would give some variants far fewer steps
than others). Wall seconds are recorded next to them.

Training goes through :func:`n2v_cascade.train.train`. A time budget is enforced by
wrapping the loop's step method (``n2v_cascade.train._Loop._step``, a private name: if
``train.py`` is refactored, update :class:`StepClock`): once the summed step time
reaches the budget, the remaining steps return at once without computing, so the model
has seen exactly the steps that fit. The same wrapper takes snapshots of the weights at
given training times (time-to-quality). Without the hook (``_Loop`` renamed) the budget
falls back to a step count from a measured step time (two short runs, ``CAL_STEPS``).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from n2v_cascade.config import N2V2_LEARNING_RATE, TrainConfig, make_config
from n2v_cascade.train import train

# Network and patch recipe used for every variant (stated in RESULTS.md).
NETWORK = {"depth": 3, "width": 32, "growth": 1.0}
COMMON = {"patch_size": 64, "batch_size": 8, "val_fraction": 0.0, "seed": 0,
          "learning_rate": 1e-3}
CAL_STEPS = (4, 16)


@dataclass(frozen=True)
class Recipe:
    """One self-supervised method: config values and how to read out its estimate."""

    key: str
    label: str
    values: dict
    posterior: bool = False  # also report the posterior mean (blind-spot probabilistic)


RECIPES: dict[str, Recipe] = {r.key: r for r in (
    Recipe("n2v", "N2V", {"variant": "n2v"}),
    Recipe("n2v2", "N2V2", {"variant": "n2v2", "learning_rate": N2V2_LEARNING_RATE}),
    Recipe("structured", "Structured (grid mask)", {"variant": "structured"}),
    Recipe("blindspot", "Blind-spot net", {"variant": "blindspot"}),
    Recipe("probabilistic", "Probabilistic (U-Net)", {"variant": "probabilistic"}),
    Recipe("probabilistic-bsn", "Probabilistic (blind-spot)",
           {"variant": "probabilistic", "backbone": "blindspot"}, posterior=True),
)}


def make_recipe_config(recipe: Recipe, noise_model: dict | None = None, *,
                       precision: str = "bfloat16", steps: int = 1, epochs: int = 1,
                       **overrides) -> TrainConfig:
    """The full training config of a recipe (benchmark defaults + overrides)."""
    values = {**COMMON, "network": dict(NETWORK), **recipe.values, "precision": precision,
              "steps_per_epoch": steps, "epochs": epochs, **overrides}
    if recipe.values.get("variant") == "probabilistic" and noise_model is not None:
        values["noise_model"] = noise_model
    return make_config("benchmark", **values)


def step_seconds(recipe: Recipe, images: list[np.ndarray], noise_model: dict | None,
                 precision: str = "bfloat16", **overrides) -> float:
    """Seconds per training step, from two short runs (start-up cost cancels out)."""
    times = []
    for n in CAL_STEPS:
        cfg = make_recipe_config(recipe, noise_model, precision=precision, steps=n, **overrides)
        times.append(train(images, cfg, progress=False).train_seconds)
    return max((times[1] - times[0]) / (CAL_STEPS[1] - CAL_STEPS[0]), 1e-4)


@dataclass
class StepClock:
    """Times the training steps; stops computing after ``budget`` s, snapshots at ``marks``."""

    budget: float
    marks: Sequence[float] = ()
    min_steps: int = 1
    seconds: float = 0.0  # CPU seconds / threads
    wall_seconds: float = 0.0
    steps: int = 0
    step_times: list[float] = field(default_factory=list)  # CPU seconds / threads, per step
    wall_step_times: list[float] = field(default_factory=list)
    snapshots: list[tuple[float, int, dict]] = field(default_factory=list)

    def done(self) -> bool:
        return self.seconds >= self.budget and self.steps >= self.min_steps

    @contextlib.contextmanager
    def attached(self) -> Iterator[bool]:
        """Wrap the loop's step while active; yields False if the hook is unavailable."""
        from n2v_cascade import train as train_module

        loop = getattr(train_module, "_Loop", None)
        original = getattr(loop, "_step", None)
        if loop is None or original is None:
            yield False
            return
        clock, pending = self, sorted(self.marks)
        import torch

        threads = max(1, torch.get_num_threads())

        def step(loop_self) -> float:
            if clock.done():
                return 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            loss = original(loop_self)
            dt = (time.process_time() - c0) / threads
            wall = time.perf_counter() - t0
            clock.seconds += dt
            clock.wall_seconds += wall
            clock.steps += 1
            clock.step_times.append(dt)
            clock.wall_step_times.append(wall)
            while pending and (clock.seconds >= pending[0] or clock.done()):
                pending.pop(0)
                weights = getattr(loop_self, "final_weights", loop_self.network.state_dict)
                state = copy.deepcopy(weights())
                clock.snapshots.append((clock.seconds, clock.steps, state))
            return loss

        loop._step = step
        try:
            yield True
        finally:
            loop._step = original


def train_budget(recipe: Recipe, images: list[np.ndarray], noise_model: dict | None,
                 budget: float, precision: str = "bfloat16", marks: Sequence[float] = (),
                 min_step: float = 0.01, min_steps: int = 1, steps: int | None = None,
                 **overrides):
    """Train for ``budget`` seconds of step time; return ``(model, clock, wall seconds)``.

    ``min_step`` bounds the number of loop iterations (``budget / min_step``); at least
    ``min_steps`` steps are computed even if they take longer than the budget. With
    ``steps`` the run trains exactly that many steps instead (no budget).
    """
    clock = StepClock(float("inf") if steps is not None else budget, marks, min_steps)
    with clock.attached() as hooked:
        if steps is not None:
            n = steps
        elif hooked:
            n = max(min_steps, int(budget / min_step))
        else:
            per_step = step_seconds(recipe, images, noise_model, precision, **overrides)
            n = max(min_steps, int(round(budget / per_step)))
        cfg = make_recipe_config(recipe, noise_model, precision=precision, steps=n,
                                 **overrides)
        t0 = time.perf_counter()
        model = train(images, cfg, progress=False)
        wall = time.perf_counter() - t0
    if not hooked:
        clock.seconds, clock.steps = model.train_seconds, n
        clock.wall_seconds = model.train_seconds
    return model, clock, wall


def denoise_all(model, images: list[np.ndarray], posterior: bool = False,
                **kwargs) -> tuple[list[np.ndarray], float]:
    """Denoise each image with ``Model.denoise``; return results and total seconds."""
    t0 = time.perf_counter()
    out = [np.asarray(model.denoise(im, posterior=posterior, **kwargs), dtype=np.float32)
           for im in images]
    return out, time.perf_counter() - t0
