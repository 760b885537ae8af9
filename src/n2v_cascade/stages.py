"""One cascade stage: its config (paper defaults, per-stage overrides), training, outputs.

Kept apart from :mod:`.cascade` so the orchestration there stays short; the names are
re-exported by :mod:`.cascade`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cascade_data import CascadeImages
from .config import DEFAULT_VARIANT, TrainConfig, make_config
from .errors import InputError
from .gtfree import Denoiser
from .io import read_image, write_image
from .methods import method_class, methods
from .methods.base import auto_stride
from .model import CHECKPOINT, META, Model
from .training import train

STAGE_EPOCHS, RETRAIN_EPOCHS = 30, 10  # paper III.E: 30 epochs, 10 for retraining stages
Stage = str | TrainConfig | Mapping[str, Any]


# --------------------------------------------------------------------------- stage configs


def merge_values(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested mappings (mask, network) merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def _values(config: TrainConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """Explicitly chosen settings (variant-implied defaults are left to each stage)."""
    if config is None:
        return {}
    if isinstance(config, TrainConfig):
        return config.model_dump(mode="json", exclude_unset=True)
    return dict(config)


def stage_config(stage: Stage, index: int, base: TrainConfig | Mapping | None = None, *,
                 epochs: int | None = None, retrain_epochs: int | None = None) -> TrainConfig:
    """Config of stage ``index`` (0-based) from a variant name, mapping or full config.

    Precedence: ``epochs`` (first stage) / ``retrain_epochs`` (later stages) if given,
    then the stage's own values, then ``base``; a base ``epochs`` only sets the first
    stage, retraining stages default to 10 (paper III.E). Stages without their own seed
    get ``base seed + index``, so stage k of every cascade is trained alike.
    """
    common = _values(base)
    if isinstance(stage, str):
        if stage not in methods():
            raise InputError(f"stages: unknown method {stage!r} (choose from "
                             f"{', '.join(methods())})")
        own: dict[str, Any] = {"variant": stage}
    elif isinstance(stage, TrainConfig):
        own = stage.model_dump(mode="json")
    elif isinstance(stage, Mapping):
        own = dict(stage)
    else:
        raise InputError(f"stages: expected a variant name, mapping or TrainConfig, "
                         f"got {type(stage).__name__}")
    values = merge_values(common, own)
    default = (common.get("epochs", STAGE_EPOCHS) if index == 0 else RETRAIN_EPOCHS)
    given = epochs if index == 0 else retrain_epochs
    values["epochs"] = given if given is not None else own.get("epochs", default)
    if "seed" not in own:
        values["seed"] = int(common.get("seed", 0)) + index
    if index and "struct" not in values.get("mask", {}) \
            and "struct_kernel" not in values.get("mask", {}):
        # a denoised input's leftover noise is correlated by construction: the default
        # "auto" would hide a square around each masked pixel; later stages hide none
        values["mask"] = {**values.get("mask", {}), "struct": "none"}
    if index and "blind_radius" not in values.get("network", {}):
        # ... and would widen the blind spot; later stages keep the pixel-only one
        try:
            blind = method_class(values.get("variant", DEFAULT_VARIANT),
                                 values.get("backbone")).backbone == "blindspot"
        except ValueError:  # make_config below names the problem
            blind = False
        if blind:
            values["network"] = {**values.get("network", {}), "blind_radius": 0}
    return make_config(f"stage {index + 1}", **values)


def stage_dir_name(index: int, variant: str) -> str:
    """``stage1-structured`` for stage index 0."""
    return f"stage{index + 1}-{variant}"


# --------------------------------------------------------------------------- one stage


@dataclass
class StageResult:
    """A stage's model and its outputs on the stage's input images."""

    model: Model
    outputs: list[np.ndarray]
    stds: list[np.ndarray] | None
    trained: bool  # False when a finished model was reused
    seconds: float  # wall time of this call


def stage_outputs(model: Model, images: Sequence[np.ndarray], posterior: bool = False,
                  axes: str | None = None
                  ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Denoise with one model; probabilistic models also give the predicted signal std.
    Joint-channel models give no std (their posterior is not defined per channel). A
    stage passes on its network's estimate (no ``blend``): the next stage learns from it."""
    if not model.method.predicts_variance or model.config.n_channels > 1:
        return [model.denoise(im, axes=axes, posterior=False, blend="none")
                for im in images], None
    pairs = [model.denoise(im, axes=axes, posterior=posterior, return_std=True)
             for im in images]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def estimate_fn(model: Model, axes: str | None = None) -> Denoiser:
    """What the GT-free estimate runs for a stage: the output passed on (prior mean)."""
    return lambda x: model.denoise(x, axes=axes, posterior=False, blend="none")


def same_config(stored: TrainConfig, requested: TrainConfig) -> bool:
    """True when a stored model answers the request; ``auto`` values (blind radius,
    struct mask, precision, dims) match what they were resolved to when that model was
    trained."""
    want = requested.model_dump(mode="json")
    have = stored.model_dump(mode="json")
    if want["network"].get("blind_radius") in ("auto", None):
        want["network"]["blind_radius"] = have["network"].get("blind_radius")
    if requested.mask.struct_auto:
        struct = want["mask"]["struct"] = have["mask"].get("struct")
        if struct not in (None, "none"):  # auto may also have widened the grid
            wider = auto_stride(requested.mask, struct, stored.dims)
            want["mask"]["stride"] = wider or want["mask"]["stride"]
    for key in ("precision", "dims"):
        if want.get(key) == "auto":
            want[key] = have.get(key)
    return want == have


def run_stage(inputs: Sequence[np.ndarray], config: TrainConfig, stage_dir: Path | None,
              names: Sequence[str], *, model: Model | None = None, posterior: bool = False,
              resume: bool = False, overwrite: bool = False, progress: bool = True,
              reuse_outputs: bool = False, retrain: bool = False,
              images: CascadeImages | None = None, device: str | None = None,
              noisy: Sequence[np.ndarray] | None = None) -> StageResult:
    """Train one stage (unless ``model`` is given), denoise its input, write the TIFFs.

    ``stage_dir/model`` is the model folder; ``stage_dir/<name>.tif`` the outputs and
    ``<name>_std.tif`` the uncertainty of probabilistic stages (nothing is written
    without ``stage_dir``). With ``resume`` a complete model with the same config is
    loaded instead of retrained, a checkpoint is continued, and outputs are read back
    when ``reuse_outputs`` and all are present. ``retrain`` (a later cascade stage, trained
    on a denoised input) silences the correlated-noise warning. ``images`` (the cascade's
    inputs) gives the arrays' axes and writes each result with its input's axes and
    metadata; without it the arrays are YX images or SYX stacks. ``device``: where to
    train and predict (None/``auto``: the best available). ``noisy``: the cascade's
    noisy input, which a ``needs_noisy`` method trains beside ``inputs`` and denoises.
    """
    axes = images.axes if images is not None else None
    t0 = time.perf_counter()
    model_dir = stage_dir / "model" if stage_dir is not None else None
    trained = model is None
    if model is None and resume and model_dir is not None and (model_dir / META).is_file():
        model, trained = Model.load(model_dir, device=device), False
        if not same_config(model.config, config):
            raise InputError(f"{model_dir}: holds a model trained with a different config; "
                             f"use --overwrite to retrain")
    elif model is None:
        again = resume and model_dir is not None and (model_dir / CHECKPOINT).is_file()
        with warnings.catch_warnings():
            if retrain:  # a denoised input's leftover noise is correlated by construction
                warnings.filterwarnings("ignore", ".*the noise looks spatially correlated")
            model = train(list(inputs), config, axes=axes, output_dir=model_dir,
                          resume=again, overwrite=overwrite or resume, progress=progress,
                          device=device, noisy=None if noisy is None else list(noisy))
    paths = [stage_dir / f"{n}.tif" for n in names] if stage_dir else []
    std_paths = [p.with_name(f"{p.stem}_std.tif") for p in paths
                 if model.method.predicts_variance and model.config.n_channels == 1]
    if not trained and reuse_outputs and all(p.is_file() for p in [*paths, *std_paths]):
        outs = [_read(p, i, images) for i, p in enumerate(paths)]
        stds = [_read(p, i, images) for i, p in enumerate(std_paths)] or None
    else:
        source = noisy if model.method.needs_noisy and noisy is not None else inputs
        outs, stds = stage_outputs(model, source, posterior, axes)
        for i, (path, img) in enumerate(zip(paths + std_paths,
                                            outs + (stds or []) if paths else [],
                                            strict=True)):
            _write(path, img, i % len(inputs), images, overwrite or resume)
    return StageResult(model, outs, stds, trained, time.perf_counter() - t0)


def _write(path: Path, image: np.ndarray, index: int, images: CascadeImages | None,
           overwrite: bool) -> None:
    """One stage result: with its input's axes and metadata, or as a YX/SYX TIFF."""
    if images is None:
        write_image(path, image, overwrite=overwrite)
    else:
        images.write(index, path, image, overwrite)


def _read(path: Path, index: int, images: CascadeImages | None) -> np.ndarray:
    """Read back a result written by :func:`_write`."""
    if images is None:
        return read_image(path, allow_constant=True)
    return images.read(index, path)
