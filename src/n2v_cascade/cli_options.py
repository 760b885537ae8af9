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
