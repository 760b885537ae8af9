"""Variant recipes and time-budgeted training through the package's training loop.

Training seconds are *CPU* seconds of the training steps divided by the number of torch
threads: on an idle machine that is the wall time of the steps, and on a shared machine
it does not count the time other processes hold the cores (this CPU is shared; with
other processes running, wall-clock budgets would give some variants far fewer steps
than others). Wall seconds are recorded next to them.

Training goes through :func:`n2v_cascade.train` with a step callback
(:class:`StepClock`): it sums the steps' CPU time and stops training once the budget is
reached, so the model has seen exactly the steps that fit, and it takes snapshots of the
weights at given training times (time-to-quality).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from n2v_cascade import train
from n2v_cascade.config import TrainConfig, make_config
from n2v_cascade.methods import method_class

# Network and patch recipe used for every variant (stated in RESULTS.md).
NETWORK = {"depth": 3, "width": 32, "growth": 1.0}
COMMON = {"patch_size": 64, "batch_size": 8, "val_fraction": 0.0, "seed": 0,
          "learning_rate": 1e-3}


@dataclass(frozen=True)
class Recipe:
    """One self-supervised method: config values and how to read out its estimate."""

    key: str
    label: str
    values: dict
    posterior: bool = False  # also report the posterior mean (blind-spot probabilistic)


RECIPES: dict[str, Recipe] = {r.key: r for r in (
    Recipe("n2v", "N2V", {"variant": "n2v"}),
    Recipe("n2v2", "N2V2", {"variant": "n2v2", "learning_rate": method_class("n2v2")
                                                                .defaults["learning_rate"]}),
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

    def progress(self) -> float:
        """The fraction of the budget spent; the learning-rate schedule follows it."""
        return self.seconds / self.budget if math.isfinite(self.budget) else 0.0

    def __call__(self, info) -> bool:
        """The training callback: count the step, snapshot at marks, stop at the budget."""
        self.seconds += info.step_cpu_seconds
        self.wall_seconds += info.step_seconds
        self.steps += 1
        self.step_times.append(info.step_cpu_seconds)
        self.wall_step_times.append(info.step_seconds)
        while self._pending and (self.seconds >= self._pending[0] or self.done()):
            self._pending.pop(0)
            self.snapshots.append((self.seconds, self.steps, copy.deepcopy(info.weights())))
        return self.done()

    def __post_init__(self) -> None:
        self._pending = sorted(self.marks)


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
    n = steps if steps is not None else max(min_steps, int(budget / min_step))
    cfg = make_recipe_config(recipe, noise_model, precision=precision, steps=n, **overrides)
    t0 = time.perf_counter()
    model = train(images, cfg, progress=False, callbacks=[clock])
    return model, clock, time.perf_counter() - t0


def denoise_all(model, images: list[np.ndarray], posterior: bool = False,
                **kwargs) -> tuple[list[np.ndarray], float]:
    """Denoise each image with ``Model.denoise``; return results and total seconds."""
    t0 = time.perf_counter()
    out = [np.asarray(model.denoise(im, posterior=posterior, **kwargs), dtype=np.float32)
           for im in images]
    return out, time.perf_counter() - t0
