"""Command-line options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but warnings and errors.")]
StepsPerEpoch = Annotated[int | None, typer.Option(help="Training steps per epoch (default: enough for the network to see every pixel about 8 times, at most 100).", rich_help_panel="Advanced")]
PatchSize = Annotated[int | None, typer.Option(help="Side in pixels of the square crops the network learns from (default 64; must be divisible by 2 to the power --depth, e.g. 8 for depth 3). Smaller is faster per step.", rich_help_panel="Advanced")]
BatchSize = Annotated[int | None, typer.Option(help="Crops per training step (default 8).", rich_help_panel="Advanced")]
LearningRate = Annotated[float | None, typer.Option("--learning-rate", "--lr", help="How fast the network changes per step (default 1e-3, n2v2 3e-4). Lower it if training stops with 'diverged'.", rich_help_panel="Advanced")]
Depth = Annotated[int | None, typer.Option(help="How many times the network halves the image internally (default 3, or 2 with --dims 3): deeper sees a wider context around each pixel but is slower.", rich_help_panel="Advanced")]
Width = Annotated[int | None, typer.Option(help="Size of the network (feature channels of its first level, default 32): wider can be better and is slower.", rich_help_panel="Advanced")]
Device = Annotated[str, typer.Option(help="Where to compute: auto (a CUDA GPU, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps.")]
Axes = Annotated[str | None, typer.Option(help="Axes of each input, e.g. YX, ZYX, TCYX (letters S T C Z Y X). Default: read from ImageJ/OME metadata when the file has them; otherwise YX for 2-D images and SYX for stacks (each image denoised on its own), or ZYX with --dims 3.")]
Dims = Annotated[str | None, typer.Option(help="2 (default): the network sees YX planes, every other axis holds separate images. 3: it convolves ZYX volumes (TYX for a time-lapse without Z). auto: 3 when the data have a Z axis of at least 8 slices.")]
PatchZ = Annotated[int | None, typer.Option(help="With --dims 3: depth in slices of the 3-D crops (default 16; stacks with fewer slices use all of them).", rich_help_panel="Advanced")]
Channels = Annotated[str | None, typer.Option(help="Files with a C axis: independent (default: each channel is a separate image of one model, normalised on its own) or joint (the channels are the network's input and output channels; the loss is per channel).")]


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


def parse_dims(text: str | None) -> int | str | None:
    """``--dims``: 2, 3 or auto (None: not given)."""
    if text is None or text == "auto":
        return text
    if text in ("2", "3"):
        return int(text)
    from .errors import InputError

    raise InputError(f"--dims: expected 2, 3 or auto, got {text!r}")
