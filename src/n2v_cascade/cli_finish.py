"""The ``finish`` command (registered on the app in :mod:`cli`): a model from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_options import Axes, Quiet


def finish(
    folder: Annotated[Path, typer.Argument(help="Folder of an interrupted `train -o FOLDER` run (holds checkpoint.pt).")],
    images: Annotated[list[Path], typer.Argument(help="The training images, as given to `train` (the normalisation is fitted on them again).")],
    axes: Axes = None,
    quiet: Quiet = False,
) -> None:
    """Save an interrupted run's checkpoint (its averaged weights) as a loadable model."""
    from .inputs import list_inputs

    for path in images:  # a typo fails here, before torch is imported
        list_inputs(path)
    from .checkpoint_export import export_checkpoint

    model = export_checkpoint(folder, [str(p) for p in images], axes=axes)
    if not quiet:
        done = model.history[-1]["epoch"] if model.history else 0
        typer.echo(f"model saved to {folder} from its checkpoint ({done} of "
                   f"{model.config.epochs} epochs finished)")
