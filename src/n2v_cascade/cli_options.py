"""Command-line options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but warnings and errors.")]
StepsPerEpoch = Annotated[int | None, typer.Option(help="Batches per epoch (default: each pixel ~8 times).")]
PatchSize = Annotated[int | None, typer.Option(help="Square patch side; divisible by 2**depth (default 128).")]
BatchSize = Annotated[int | None, typer.Option(help="Patches per batch (default 8).")]
LearningRate = Annotated[float | None, typer.Option("--learning-rate", "--lr", help="Adam learning rate (default 1e-3; n2v2 3e-4).")]
Depth = Annotated[int | None, typer.Option(help="U-Net levels (default 3).")]
Width = Annotated[int | None, typer.Option(help="Channels of the first level (default 32).")]
Device = Annotated[str, typer.Option(help="Where to compute: auto (a CUDA GPU, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps.")]
Axes = Annotated[str | None, typer.Option(help="Axes of each input, e.g. YX, ZYX, TCYX (letters S T C Z Y X); default YX for 2-D images, SYX for stacks (each image of the stack denoised on its own).")]


def parse_duration(text: str | None, option: str = "--time-limit") -> float | None:
    """Seconds from ``90``, ``90s``, ``10m`` or ``2h`` (None stays None)."""
    if text is None:
        return None
    value, unit = text.strip().lower(), "s"
    if value[-1:] in ("s", "m", "h"):
        value, unit = value[:-1], value[-1]
    try:
        seconds = float(value) * {"s": 1, "m": 60, "h": 3600}[unit]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        from .errors import InputError

        raise InputError(f"{option}: expected a duration like 90s, 10m or 2h, got {text!r}")
    return seconds
