"""Image-quality metrics (MSE, PSNR, SSIM) with an explicit data range, and result files.

PSNR and SSIM depend on the assumed data range, and scikit-image's guess from the dtype is
wrong for float images in 0..255 or 0..65535. Every metric here therefore takes the range
explicitly; :func:`default_data_range` documents the one rule used when the caller has none.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from n2v_cascade.errors import InputError, OutputExistsError

__all__ = [
    "default_data_range",
    "evaluate",
    "format_table",
    "mse",
    "psnr",
    "ssim",
    "write_metrics",
]

# Float formats by metric name; a column uses the first metric named in it ("psnr_noisy").
_FLOAT_FORMATS = {"mse": ".6g", "psnr": ".2f", "ssim": ".4f"}
_SSIM_MIN_SIDE = 7  # scikit-image's default (and smallest odd) SSIM window


def _pair(x: np.ndarray, ref: np.ndarray, source: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Float64 arrays of equal shape, or an InputError naming both shapes and ``source``."""
    a, b = np.asarray(x), np.asarray(ref)
    if a.shape != b.shape:
        raise InputError(
            f"{source} has shape {a.shape} but the reference has shape {b.shape}; "
            "they must match to compute metrics"
        )
    if a.size == 0:
        raise InputError(f"{source} is empty (shape {a.shape})")
    for arr, name in ((a, source), (b, "reference")):
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)


def _check_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def mse(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean squared error between ``x`` and the reference ``ref``."""
    a, b = _pair(x, ref)
    return float(mean_squared_error(b, a))


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range**2 / mse)``; ``inf`` if equal."""
    a, b = _pair(x, ref)
    value = _check_range(data_range)
    if not np.any(a != b):
        return math.inf  # skimage would divide by zero (with a warning) to get the same
    return float(peak_signal_noise_ratio(b, a, data_range=value))


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    """Structural similarity (scikit-image defaults, 7x7 window).

    A stack or volume (..., Y, X) gives the mean of the 2-D SSIMs of its YX planes,
    because the slices of a microscopy stack are usually much further apart than pixels
    within a slice.
    """
    a, b = _pair(x, ref)
    value = _check_range(data_range)
    if a.ndim < 2:
        raise InputError(f"SSIM needs an image with Y and X axes, got shape {a.shape}")
    if min(a.shape[-2:]) < _SSIM_MIN_SIDE:
        raise InputError(
            f"SSIM needs images at least {_SSIM_MIN_SIDE}x{_SSIM_MIN_SIDE} pixels, "
            f"got shape {a.shape}"
        )
    if a.ndim == 2:
        return float(structural_similarity(a, b, data_range=value))
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    per_slice = [structural_similarity(s, r, data_range=value) for s, r in zip(a, b, strict=True)]
    return float(np.mean(per_slice))


def default_data_range(reference: np.ndarray) -> float:
    """Data range to use for PSNR/SSIM when none is given, judged from the reference values.

    The rule (first match wins), for a reference with minimum ``lo`` and maximum ``hi``:

    * ``0 <= lo`` and ``hi <= 1``: 1.0 (normalised float data);
    * ``0 <= lo`` and ``hi <= 255``: 255.0 (8-bit-like data);
    * ``0 <= lo`` and ``hi <= 65535``: 65535.0 (16-bit-like data);
    * otherwise ``hi - lo`` (1.0 if that is zero).

    Values are used rather than the dtype so that float images holding 0..255 data get the
    range they were recorded with.
    """
    arr = np.asarray(reference)
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        raise InputError(f"reference must be a non-empty numeric array, got shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError("reference contains NaN or infinite values")
    if lo >= 0:
        for limit in (1.0, 255.0, 65535.0):
            if hi <= limit:
                return limit
    return hi - lo if hi > lo else 1.0


def evaluate(
    denoised: np.ndarray,
    reference: np.ndarray,
    data_range: float | None = None,
    source: str = "denoised",
) -> dict[str, float]:
    """MSE, PSNR and SSIM of ``denoised`` against ``reference``.

    ``data_range`` defaults to :func:`default_data_range` of the reference; ``source`` names
    the image in error messages (e.g. a file name).

    Returns
    -------
    dict
        ``{"mse", "psnr", "ssim", "data_range"}``, all floats.
    """
    a, b = _pair(denoised, reference, source)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{source} contains NaN or infinite values")
    value = default_data_range(b) if data_range is None else _check_range(data_range)
    return {
        "mse": mse(a, b),
        "psnr": psnr(a, b, value),
        "ssim": ssim(a, b, value),
        "data_range": value,
    }


def _float_format(column: str) -> str:
    for token in re.split(r"[^a-z0-9]+", column.lower()):
        if token in _FLOAT_FORMATS:
            return _FLOAT_FORMATS[token]
    return ".6g"


def _cell(value: object, column: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        return str(v) if not math.isfinite(v) else format(v, _float_format(column))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _columns(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """All keys in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """Render rows as an aligned Markdown table (numeric columns right-aligned).

    ``columns`` picks and orders the columns (default: every key, in first-seen order);
    missing values are blank. Floats: MSE with 6 significant digits, PSNR with 2 decimals,
    SSIM with 4 decimals (matched by name, so ``psnr_noisy`` counts), others ``.6g``.
    """
    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    cols = list(columns) if columns is not None else _columns(rows)
    if not cols:
        return ""
    cells = [[_cell(row.get(c), c) for c in cols] for row in rows]
    numeric = [
        all(_is_number(row.get(c)) for row in rows if row.get(c) is not None) and bool(rows)
        for c in cols
    ]
    header = [c.replace("|", "\\|") for c in cols]
    widths = [max([3, len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    rule = [("-" * (w - 1) + ":") if n else "-" * w for w, n in zip(widths, numeric, strict=True)]

    def line(parts: list[str], right: list[bool]) -> str:
        padded = (
            p.rjust(w) if r else p.ljust(w) for p, w, r in zip(parts, widths, right, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    out = [line(header, [False] * len(cols)), line(rule, [False] * len(cols))]
    out += [line(r, numeric) for r in cells]
    return "\n".join(out)


def _json_value(value: object) -> object:
    """Plain JSON value; non-finite floats become the strings "inf", "-inf" and "nan"."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def write_metrics(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, object]],
    overwrite: bool = False,
) -> Path:
    """Write metric rows to ``path`` as JSON (a list of objects) or CSV, chosen by suffix.

    The file is written to a temporary file in the same folder and then renamed, so a
    crash never leaves a half-written result. Non-finite floats (PSNR of identical images)
    are written as ``inf``/``nan`` (strings in JSON, which has no infinity).

    Raises
    ------
    InputError
        If the suffix is neither ``.json`` nor ``.csv``.
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise InputError(f"metrics file {target} must end in .json or .csv")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; use overwrite to replace it")
    rows = [rows] if isinstance(rows, Mapping) else list(rows)
    if suffix == ".json":
        data = [{str(k): _json_value(v) for k, v in row.items()} for row in rows]
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_columns(rows), restval="", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else _json_value(v) for k, v in row.items()})
        text = buffer.getvalue()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results are meant to be shared
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
