"""Denoising many files: each output is written whole or not at all; failures are reported.

One bad file never stops the others; the caller learns which ones failed.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import InputError, N2VError, OutputExistsError
from .formats import FORMATS_EXTRA_SUFFIXES
from .imagefile import write_image_nd
from .inputs import Input, list_inputs, read_input
from .io import IMAGE_SUFFIXES, write_image

# Output types of one denoised image: float32 TIFF, or PNG (integers, see write_image).
OUTPUT_SUFFIXES = (".tif", ".tiff", ".png")


def _stem(path: Path) -> tuple[str, str]:
    """A file's name without its type, and the TIFF type its result gets: ``.ome.tif``
    for OME-TIFF and microscope formats (their metadata is written as OME), else ``.tif``."""
    name = path.name
    if name.lower().endswith((".ome.tif", ".ome.tiff")):
        return name[: name.lower().rindex(".ome.tif")], ".ome.tif"
    if path.suffix.lower() in FORMATS_EXTRA_SUFFIXES:
        return path.stem, ".ome.tif"
    return path.stem, ".tif"


def output_paths(inputs: Sequence[Path], output: Path, suffix: str = "_denoised") -> list[Path]:
    """Where each input's result goes: ``output`` itself for one input named ``*.tif`` or
    ``*.png``, otherwise ``output/<stem><suffix>.tif`` (``.ome.tif`` for OME-TIFF, CZI,
    ND2 and LIF inputs)."""
    kind = output.suffix.lower()
    if len(inputs) == 1 and kind in OUTPUT_SUFFIXES:
        return [output]
    if len(inputs) == 1 and kind in IMAGE_SUFFIXES:
        raise InputError(f"{output}: unsupported output type '{kind}' (denoise writes .tif "
                         f"or .png)")
    if kind in IMAGE_SUFFIXES:
        raise InputError(f"{output}: several inputs need an output folder, not a file name")
    paths = [output / f"{stem}{suffix}{kind}" for stem, kind in map(_stem, inputs)]
    if len(set(paths)) != len(paths):
        raise InputError(f"{output}: two inputs share a file name; denoise them separately")
    return paths


def choice_text(records: Sequence[dict]) -> str:
    """What ``posterior="auto"`` chose for an image and why, or the share ``blend``
    returned (empty when neither applied)."""
    scored = [r for r in records if "score_prior" in r]
    shares = [r["blend"] for r in records if "blend" in r]
    if any(shares):
        return (f": {100 * float(np.mean(shares)):.0f}% of the measured value blended back "
                f"(--blend)")
    if not scored:
        return ""
    used = sum(r["posterior"] for r in scored)
    prior = float(np.mean([r["score_prior"] for r in scored]))
    post = float(np.mean([r["score_posterior"] for r in scored]))
    what = ("posterior mean" if used == len(scored) else "prior mean" if not used
            else f"posterior mean for {used} of {len(scored)} planes")
    return (f": {what} (ground-truth-free score: prior {prior:.4g}, posterior {post:.4g}; "
            f"lower is better)")


def _sibling(path: Path, tag: str) -> Path:
    """``out_std.tif`` next to ``out.tif``; always a float TIFF (a PNG would round it)."""
    stem, kind = _stem(path)
    suffix = kind if path.suffix.lower() in (".tif", ".tiff") else ".tif"
    return path.with_name(f"{stem}_{tag}{suffix}")


def denoise_files(
    model, sources: Sequence[Path], output: Path, *, overwrite: bool = False,
    progress: bool = True, posterior: bool | str = "auto", uncertainty: bool = False,
    noise_model: str = "bootstrap", axes: str | None = None,
    output_dtype: str = "float32", blend: str | float = "auto", **predict_kw,
) -> list[tuple[Path, str]]:
    """Denoise every image under ``sources``; return (file, problem) for each failure.

    Each file is read with its axes and metadata and written back with them (TIFF:
    ImageJ hyperstack or OME-TIFF as the input; see :func:`write_image_nd`), in float32
    or, with ``output_dtype="input"``, the input's pixel type (clipped values are
    counted and reported). Outputs that already exist are refused up front (before any
    work) unless ``overwrite``; the inputs themselves are never written to. Per-file
    errors go to stderr as one ``error:`` line each, so a batch log lists exactly what
    failed; ``progress=False`` prints nothing else.
    """
    if output_dtype not in ("float32", "input"):
        raise InputError(f"--output-dtype: expected float32 or input, got {output_dtype!r}")
    if (posterior is True or uncertainty) and not model.method.predicts_variance:
        raise InputError(f"--posterior/--uncertainty: variant {model.config.variant!r} predicts "
                         f"no variance; train with --variant probabilistic")
    inputs: list[Path] = []
    for src in sources:
        inputs.extend(list_inputs(src))
    outs = output_paths(inputs, Path(output))
    protect = [p.resolve() for p in inputs]
    targets = [(o, _sibling(o, "std") if uncertainty else None) for o in outs]
    for path in (p for pair in targets for p in pair if p is not None):
        if path.resolve() in protect or (  # same path, or a hard link to an input
                path.is_file() and any(os.path.samefile(path, i) for i in inputs)):
            raise InputError(f"{path}: is an input file; refusing to overwrite it")
    if not overwrite:
        existing = [str(p) for pair in targets for p in pair if p is not None and p.exists()]
        if len(existing) == 1:
            raise OutputExistsError(f"{existing[0]}: already exists (pass --overwrite to "
                                    f"replace it)")
        if existing:
            raise OutputExistsError(f"{existing[0]}: already exists, and so do "
                                    f"{len(existing) - 1} more outputs (pass --overwrite to "
                                    f"replace them)")
    failed: list[tuple[Path, str]] = []
    quiet = not progress or len(inputs) < 2  # one image: its tiles show the progress
    predict_kw = {"progress": progress and len(inputs) == 1, **predict_kw}
    for src, (out, std_out) in tqdm(list(zip(inputs, targets, strict=True)), disable=quiet,
                                    desc="denoising", unit="image"):
        try:
            item = read_input(src, axes, model.config.dims)
            chosen: list[dict] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = model.denoise(item.data, axes=item.axes, posterior=posterior,
                                       return_std=uncertainty, noise_model=noise_model,
                                       info=chosen, blend=blend, **predict_kw)
            mean, std = result if uncertainty else (result, None)
            for w in caught:  # name the file each warning is about
                warnings.warn(f"{src}: {w.message}", w.category, stacklevel=2)
            clipped = _write(out, mean, item, output_dtype, overwrite, protect)
            if std_out is not None:
                _write(std_out, std, item, "float32", overwrite, protect)
        except N2VError as exc:
            failed.append((src, exc.cli_message()))
            tqdm.write(f"error: {exc.cli_message()}", file=sys.stderr)
            continue
        if clipped:
            tqdm.write(f"warning: {out}: {clipped} value(s) clipped to the {item.meta.dtype} "
                       f"range", file=sys.stderr)
        if progress:
            tqdm.write(f"{src} -> {out}" + (f" (+ {std_out.name})" if std_out else "")
                       + choice_text(chosen))
    if failed and len(inputs) > 1:
        tqdm.write(f"error: {len(failed)} of {len(inputs)} image(s) failed: "
                   + ", ".join(str(p) for p, _ in failed), file=sys.stderr)
    return failed


def _write(path: Path, data: np.ndarray, item: Input, output_dtype: str, overwrite: bool,
           protect: Sequence[Path]) -> int:
    """Write one result: a PNG as 2-D integers, anything else with the input's axes and
    metadata; returns how many values were clipped to the input's type."""
    if path.suffix.lower() == ".png":
        write_image(path, data, overwrite=overwrite, protect=protect)
        return 0
    report = write_image_nd(path, data, item.meta, output_dtype=output_dtype,
                            overwrite=overwrite, protect=protect)
    return report.n_clipped
