"""The ``export`` command: a trained model as a BioImage Model Zoo package (``.zip``).

Registered on the app in :mod:`cli`; a thin shell over :func:`n2v_cascade.bmz.export_bioimageio`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .cli_options import Overwrite


def export(
    model: Annotated[Path, typer.Argument(help="Model folder written by `train` (or a package written by `export`).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Package to write (NAME.zip).")],
    test_image: Annotated[Path | None, typer.Option(help="Noisy image whose centre crop becomes the test input and cover (default: the bundled cell image, scaled to the training data).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the package (letters, digits, spaces, _+-()).")] = None,
    author: Annotated[list[str] | None, typer.Option(help="Author name (repeatable).")] = None,
    license: Annotated[str, typer.Option(help="SPDX licence of the weights.")] = "CC-BY-4.0",
    tile: Annotated[int | None, typer.Option(help="Input tile side: a multiple of 2**depth, more than twice the halo (default 256 or 4 halos).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Export a model as a BioImage Model Zoo package (deepImageJ, ilastik, bioimageio.core), validated offline."""
    from .model import Model

    net = Model.load(model)
    net.export_bioimageio(output, test_image=None if test_image is None else str(test_image),
                          name=name, authors=author or (), license=license, tile=tile,
                          overwrite=overwrite)
    typer.echo(f"wrote {output} (validated with bioimageio.core)")
