"""Progress reports: a live bar on a terminal, plain periodic lines in a log file.

A bar redrawn with carriage returns fills a redirected log with one long line; when
stderr is not a terminal the same calls print one line every ``interval`` seconds (and
at the end) with the count, the elapsed time and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm

#: Seconds between plain progress lines in a log.
INTERVAL = 30.0


def clock(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """The subset of tqdm's interface used here, printing plain lines."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0,
                 interval: float = INTERVAL, limit: float | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.limit = limit
        self.start = self.last = time.monotonic()
        self.first, self.interval, self.postfix = initial, interval, ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self._line()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def _line(self) -> None:
        self.last = now = time.monotonic()
        done = self.n - self.first
        elapsed = now - self.start
        left = (self.total - self.n) * elapsed / done if done else float("inf")
        if self.limit is not None:  # a time limit ends the run first
            left = min(left, self.limit - elapsed)
        eta = clock(left) if left != float("inf") else "?"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{pct}, {clock(elapsed)} "
              f"elapsed, {eta} left{extra}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.n > self.first:
            self._line()


def progress_bar(total: int, desc: str, unit: str, *, enabled: bool = True,
                 initial: int = 0, limit: float | None = None) -> tqdm | PlainProgress:
    """A tqdm bar on a terminal, :class:`PlainProgress` lines otherwise (both off if not
    ``enabled``). ``limit``: seconds after which the run stops (caps the time left)."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(total, desc, unit, initial, limit=limit)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                dynamic_ncols=True)


def note(text: str) -> None:
    """A message that does not break a running bar."""
    tqdm.write(text, file=sys.stderr)


class RunProgress:
    """One bar over the phases of a run (``train_refined``'s two trainings): the count goes
    on from phase to phase; the total holds the later phases' steps, estimated from the
    current phase's steps per epoch until they start; the time left is the run's.

    ``plan``: what the phases after the first do, added to the first phase's settings line
    so that the whole recipe is one line at the start.
    """

    def __init__(self, phases: int = 1, *, enabled: bool = True, limit: float | None = None,
                 later_epochs: int = 0, plan: str = "") -> None:
        self.phases, self.enabled, self.limit = phases, enabled, limit
        self.later_epochs, self.plan = later_epochs, plan
        self.index = self.n = self.total = 0  # the phase, the run's step, its total
        self.spent = 0.0  # training seconds of the finished phases
        self.bar: tqdm | PlainProgress | None = None

    def skip(self, seconds: float) -> None:
        """A phase that needs no training (a resumed run found it finished in ``seconds``
        of training)."""
        self.index += 1
        self.spent += seconds

    def start(self, steps: int, initial: int, steps_per_epoch: int) -> None:
        """Begin the next phase: ``steps`` in all, ``initial`` of them done before."""
        self.index += 1
        later = self.later_epochs * steps_per_epoch if self.index < self.phases else 0
        self.n += initial
        self.total = self.n - initial + steps + later
        desc = "train" if self.phases == 1 else f"train {self.index}/{self.phases}"
        if self.bar is None:
            self.bar = progress_bar(self.total, desc, "step", enabled=self.enabled,
                                    initial=self.n, limit=self.limit)
        else:
            self.bar.total, self.bar.n, self.bar.desc = self.total, self.n, desc

    def update(self, **postfix: Any) -> None:
        """One step done; ``postfix``: values shown beside the count."""
        self.n += 1
        self.bar.update(1)
        self.bar.set_postfix(**postfix)

    def end(self, seconds: float) -> None:
        """The current phase stopped (finished, or at a stop) after ``seconds``."""
        self.spent += seconds
        if self.index >= self.phases:
            self.close()

    def left(self, phase_seconds: float) -> float | None:
        """Seconds of the run's time limit left, the current phase ``phase_seconds`` in."""
        return None if self.limit is None else self.limit - self.spent - phase_seconds

    def settings(self, line: str, phase_limit: float | None = None) -> str:
        """The settings line of the phase about to start, with the time limit: the first
        with the plan of the rest, later ones marked with their phase; ``phase_limit``:
        its share of the run's time limit."""
        phase = self.index + 1
        if self.phases == 1:
            return line if self.limit is None else f"{line}, time limit {clock(self.limit)}"
        if self.limit is not None and phase_limit is not None:
            line += (f", time limit {clock(self.limit)} for the run ({clock(phase_limit)} "
                     f"for phase {phase})")
        if phase == 1:
            return f"{line}; {self.plan}" if self.plan else line
        return f"phase {phase}/{self.phases}: {line}"

    def close(self) -> None:
        """End the bar (at the run's end, or when a phase fails)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
