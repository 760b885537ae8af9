"""Denoising many files: each output is written whole or not at all; failures are reported.

One bad file never stops the others; the caller learns which ones failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .errors import InputError, N2VError, OutputExistsError
from .io import IMAGE_SUFFIXES, list_images, read_image, write_image


def output_paths(inputs: Sequence[Path], output: Path, suffix: str = "_denoised") -> list[Path]:
    """Where each input's result goes: ``output`` itself for one input named ``*.tif``,
    otherwise ``output/<stem><suffix>.tif``."""
    if len(inputs) == 1 and output.suffix.lower() in (".tif", ".tiff"):
        return [output]
    if output.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"{output}: several inputs need an output folder, not a file name")
    paths = [output / f"{p.stem}{suffix}.tif" for p in inputs]
    if len(set(paths)) != len(paths):
        raise InputError(f"{output}: two inputs share a file name; denoise them separately")
    return paths


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}_{tag}{path.suffix}")


def denoise_files(
    model, sources: Sequence[Path], output: Path, *, overwrite: bool = False,
    progress: bool = True, posterior: bool = False, uncertainty: bool = False, **predict_kw,
) -> list[tuple[Path, str]]:
    """Denoise every image under ``sources``; return (file, problem) for each failure.

    Outputs that already exist are refused up front (before any work) unless
    ``overwrite``; the inputs themselves are never written to.
    """
    inputs: list[Path] = []
    for src in sources:
        inputs.extend(list_images(src))
    outs = output_paths(inputs, Path(output))
    protect = [p.resolve() for p in inputs]
    targets = [(o, _sibling(o, "std") if uncertainty else None) for o in outs]
    if not overwrite:
        existing = [str(p) for pair in targets for p in pair if p is not None and p.exists()]
        if existing:
            raise OutputExistsError(
                f"{existing[0]}: output exists ({len(existing)} in all); use --overwrite")
    failed: list[tuple[Path, str]] = []
    for src, (out, std_out) in tqdm(list(zip(inputs, targets, strict=True)), disable=not progress,
                                    desc="denoising", unit="image"):
        try:
            image = read_image(src)
            if uncertainty or posterior:
                mean, std = model.denoise(image, posterior=posterior, return_std=True,
                                          **predict_kw)
            else:
                mean, std = model.denoise(image, **predict_kw), None
            write_image(out, mean, overwrite=overwrite, protect=protect)
            if std_out is not None:
                write_image(std_out, std, overwrite=overwrite, protect=protect)
        except N2VError as exc:
            failed.append((src, str(exc)))
            tqdm.write(f"error: {exc}")
            continue
        tqdm.write(f"{src} -> {out}" + (f" (+ {std_out.name})" if std_out else ""))
    if failed:
        tqdm.write(f"{len(failed)} of {len(inputs)} image(s) failed: "
                   + ", ".join(p.name for p, _ in failed))
    return failed
