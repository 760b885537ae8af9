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
from .io import IMAGE_SUFFIXES, list_images, read_image, write_image

# Output types of one denoised image: float32 TIFF, or PNG (integers, see write_image).
OUTPUT_SUFFIXES = (".tif", ".tiff", ".png")


def output_paths(inputs: Sequence[Path], output: Path, suffix: str = "_denoised") -> list[Path]:
    """Where each input's result goes: ``output`` itself for one input named ``*.tif`` or
    ``*.png``, otherwise ``output/<stem><suffix>.tif``."""
    kind = output.suffix.lower()
    if len(inputs) == 1 and kind in OUTPUT_SUFFIXES:
        return [output]
    if len(inputs) == 1 and kind in IMAGE_SUFFIXES:
        raise InputError(f"{output}: unsupported output type '{kind}' (denoise writes .tif "
                         f"or .png)")
    if kind in IMAGE_SUFFIXES:
        raise InputError(f"{output}: several inputs need an output folder, not a file name")
    paths = [output / f"{p.stem}{suffix}.tif" for p in inputs]
    if len(set(paths)) != len(paths):
        raise InputError(f"{output}: two inputs share a file name; denoise them separately")
    return paths


def choice_text(records: Sequence[dict]) -> str:
    """What ``posterior="auto"`` chose for an image and why (empty when it did not choose)."""
    scored = [r for r in records if "score_prior" in r]
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
    suffix = path.suffix if path.suffix.lower() in (".tif", ".tiff") else ".tif"
    return path.with_name(f"{path.stem}_{tag}{suffix}")


def denoise_files(
    model, sources: Sequence[Path], output: Path, *, overwrite: bool = False,
    progress: bool = True, posterior: bool | str = "auto", uncertainty: bool = False,
    noise_model: str = "bootstrap", **predict_kw,
) -> list[tuple[Path, str]]:
    """Denoise every image under ``sources``; return (file, problem) for each failure.

    Outputs that already exist are refused up front (before any work) unless
    ``overwrite``; the inputs themselves are never written to. Per-file errors go to
    stderr as one ``error:`` line each, so a batch log lists exactly what failed;
    ``progress=False`` prints nothing else.
    """
    if (posterior is True or uncertainty) and not model.method.predicts_variance:
        raise InputError(f"--posterior/--uncertainty: variant {model.config.variant!r} predicts "
                         f"no variance; train with --variant probabilistic")
    inputs: list[Path] = []
    for src in sources:
        inputs.extend(list_images(src))
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
            image = read_image(src)
            chosen: list[dict] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = model.denoise(image, posterior=posterior, return_std=uncertainty,
                                       noise_model=noise_model, info=chosen, **predict_kw)
            mean, std = result if uncertainty else (result, None)
            for w in caught:  # name the file each warning is about
                warnings.warn(f"{src}: {w.message}", w.category, stacklevel=2)
            write_image(out, mean, overwrite=overwrite, protect=protect)
            if std_out is not None:
                write_image(std_out, std, overwrite=overwrite, protect=protect)
        except N2VError as exc:
            failed.append((src, exc.cli_message()))
            tqdm.write(f"error: {exc.cli_message()}", file=sys.stderr)
            continue
        if progress:
            tqdm.write(f"{src} -> {out}" + (f" (+ {std_out.name})" if std_out else "")
                       + choice_text(chosen))
    if failed and len(inputs) > 1:
        tqdm.write(f"error: {len(failed)} of {len(inputs)} image(s) failed: "
                   + ", ".join(str(p) for p, _ in failed), file=sys.stderr)
    return failed
