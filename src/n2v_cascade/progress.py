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
