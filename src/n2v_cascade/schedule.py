"""The learning-rate schedule: how the rate follows the fraction of the run that is done.

A run ends at its last step, at its time limit, or when a budget callback stops it,
whichever comes first, so the fraction done is the largest of the three (a callback tells
its own fraction through a ``progress()`` method, as the benchmarks' CPU-time clock
does). The fraction never goes back: a resumed run continues the schedule where it
stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, fraction: float) -> float:
    """The learning rate's multiplier when ``fraction`` (0..1) of the run is done.

    ``constant``: 1. ``cosine``: half a cosine from 1 to 0, so the last steps take small
    updates and the weights settle instead of jumping around the minimum.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(fraction, 0.0), 1.0)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; known: {SCHEDULES}")


def progress_sources(callbacks: Sequence[object]) -> list[Callable[[], float]]:
    """The ``progress()`` methods of the callbacks that have one."""
    return [cb.progress for cb in callbacks if callable(getattr(cb, "progress", None))]


def clock_fraction(elapsed: float, time_limit: float | None,
                   sources: Sequence[Callable[[], float]]) -> float | None:
    """The fraction of the run done by its clocks (time limit, callbacks), or None if it
    has none; the caller combines it with the steps' own fraction."""
    timed = [s() for s in sources]
    if time_limit is not None:
        timed.append(elapsed / time_limit)
    return max(timed) if timed else None
