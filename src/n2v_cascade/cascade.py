"""Progressive retraining cascades (paper III.D), multi-pass denoising, GT-free stage scores.

A cascade ``[s1, s2, ...]`` trains ``s1`` on the noisy images, denoises them, then trains
``s2`` on that output as if it were the noisy input, and so on; ``[v, v, v]`` is three
passes of one variant. :meth:`Cascade.from_models` + :meth:`Cascade.apply` instead run
already-trained models in sequence without retraining (the paper's contrasting mode).

Every stage gets a ground-truth-free error estimate (:class:`SelfSupervisedError`) with
its standard error, which ``auto`` mode uses to decide when to stop adding stages; stages
whose scores differ by at most two standard errors are reported as indistinguishable.

Probabilistic stages pass on their *prior* mean (the network's prediction from the
context) unless ``posterior`` is set; the uncertainty map is the predicted signal std.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .cascade_data import CascadeImages, prepare_images, reference_samples
from .cascade_report import rank_stages, ranking_note, report_stage, versus_best
from .config import TrainConfig, update_config
from .errors import InputError
from .gtfree import (
    BLOCK,
    SIGNIFICANT,
    GTFreeOptions,
    SelfSupervisedError,
    compare,
    gt_free_errors,
)
from .methods import method_class
from .metrics import default_data_range, evaluate
from .model import Model
from .safe_write import atomic_write_text, check_output_folder
from .stages import (
    Stage,
    StageResult,
    estimate_fn,
    run_stage,
    stage_config,
    stage_dir_name,
    stage_outputs,
)

MANIFEST = "cascade.json"


# --------------------------------------------------------------------------- inputs


def image_names(named: Sequence[tuple[str, np.ndarray]]) -> list[str]:
    """File stems for outputs: the input file's stem, ``image``/``image0`` for arrays."""
    names: list[str] = []
    for i, (name, _) in enumerate(named):
        stem = (f"image{i}" if len(named) > 1 else "image") if name.startswith("array") \
            else Path(name).stem
        base, k = stem, 2
        while stem in names:
            stem, k = f"{base}_{k}", k + 1
        names.append(stem)
    return names


def score(outputs: Sequence[np.ndarray], refs: Sequence[np.ndarray], data_range: float
          ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Mean MSE/PSNR/SSIM over images (PSNR averaged in dB) and the per-image rows."""
    rows = [evaluate(o, r, data_range) for o, r in zip(outputs, refs, strict=True)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("mse", "psnr", "ssim")}
    return mean, rows


def digest(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr, np.float32).tobytes()).hexdigest()[:16]


def jsonable(obj: Any) -> Any:
    """Plain JSON (non-finite floats as strings, numpy scalars unwrapped)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def _prepare_dir(out: Path | None, resume: bool, overwrite: bool) -> dict:
    """Refuse a used folder without resume/overwrite; return the old manifest on resume."""
    if out is None:
        if resume:
            raise InputError("resume needs an output folder")
        return {}
    check_output_folder(out, busy=out.is_dir() and any(out.iterdir()) and not (resume or overwrite),
                        hint="folder is not empty; use --resume to continue a cascade or "
                             "--overwrite to start over")
    manifest = out / MANIFEST
    if resume and manifest.is_file():
        try:
            return json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{manifest}: corrupt manifest; use --overwrite") from None
    return {}


# --------------------------------------------------------------------------- the cascade


class Cascade:
    """A chain of denoising stages, each retrained on its predecessor's output.

    Parameters
    ----------
    stages
        One variant name, mapping of config values or TrainConfig per stage; with
        ``auto``, the candidate variants tried at every position.
    base
        Settings shared by every stage (patch size, network, seed, ...).
    epochs, retrain_epochs
        Epochs of the first / of every later stage (default 30 / 10, paper III.E).
    posterior
        Probabilistic stages pass on the posterior mean instead of the prior mean
        (exact only with ``backbone: blindspot``). The GT-free score always uses the
        prior mean: the posterior needs the pixel that the estimate hides.
    auto, max_stages
        Grow the chain greedily -- at each position train every candidate, keep the one
        with the lowest GT-free score -- until the score stops improving by more than two
        standard errors of the difference or ``max_stages`` is reached; the best chain
        is kept.
    gt_free
        Masks of the GT-free estimate (:class:`GTFreeOptions`).
    axes
        Axes of array inputs (files: their own unless given), as for ``train``.
    device
        Where the stages train and predict (None/``auto``: the best available).
    """

    def __init__(self, stages: Sequence[Stage] = ("structured", "probabilistic"), *,
                 base: TrainConfig | Mapping | None = None, epochs: int | None = None,
                 retrain_epochs: int | None = None, posterior: bool = False,
                 auto: bool = False, max_stages: int = 4,
                 gt_free: GTFreeOptions | None = None, axes: str | None = None,
                 device: str | None = None) -> None:
        self.specs = [stages] if isinstance(stages, str) else list(stages)
        if not self.specs:
            raise InputError("stages: at least one stage is needed")
        if max_stages < 1:
            raise InputError(f"max_stages must be >= 1, got {max_stages}")
        self.base, self.epochs, self.retrain_epochs = base, epochs, retrain_epochs
        self.posterior, self.auto, self.max_stages = posterior, auto, max_stages
        self.gt_free = gt_free or GTFreeOptions()
        self.axes, self.device = axes, device
        self._dims: int | None = None  # the network dims, once resolved on the inputs
        self.models: list[Model] = []
        self.model_paths: list[str | None] = []
        self.outputs: list[list[np.ndarray]] = []
        self.manifest: dict[str, Any] = {}
        for k in range(2 if auto else len(self.specs)):  # refuse bad stages before any work
            for spec in (self.specs if auto else [self.specs[k]]):
                self.config(k, spec)

    def config(self, index: int, stage: Stage) -> TrainConfig:
        """The training config of ``stage`` at position ``index`` (0-based); every stage
        has the dims resolved on the inputs (``auto`` is resolved once, for all)."""
        cfg = stage_config(stage, index, self.base, epochs=self.epochs,
                           retrain_epochs=self.retrain_epochs)
        if self._dims is None or cfg.dims == self._dims:
            return cfg
        if cfg.dims != "auto":
            raise InputError(f"stage {index + 1}: dims {cfg.dims} differs from the cascade's "
                             f"{self._dims}; every stage sees the same images")
        return update_config(cfg, f"stage {index + 1}", dims=self._dims)

    def _images(self, images: object, allow_constant: bool = False,
                axes: str | None = None) -> CascadeImages:
        """The inputs in the stages' sample layout (dims from the models or the config);
        ``axes`` (default: the cascade's) names the axes of arrays or overrides files'."""
        first = (self.models[0].config if self.models
                 else stage_config(self.specs[0], 0, self.base))
        dims = first.dims if self._dims is None else self._dims
        prepared = prepare_images(images, axes or self.axes, dims,
                                  first.channels == "joint", allow_constant)
        self._dims = prepared.dims
        return prepared

    @classmethod
    def from_models(cls, models: Sequence[str | Path | Model], *, posterior: bool = False,
                    device: str | None = None) -> Cascade:
        """A cascade of already-trained models, for :meth:`apply` and :meth:`denoise`."""
        loaded = [m if isinstance(m, Model) else Model.load(m, device=device) for m in models]
        if not loaded:
            raise InputError("models: at least one model folder is needed")
        cascade = cls([m.config for m in loaded], posterior=posterior, device=device)
        cascade.models = loaded
        cascade.model_paths = [None if isinstance(m, Model) else str(Path(m).resolve())
                               for m in models]
        return cascade

    # -- use ---------------------------------------------------------------------
    def denoise(self, images: object, *, stages: int | None = None, return_all: bool = False,
                axes: str | None = None) -> Any:
        """Apply the trained stages in sequence (an array in, an array out; a list, a list).

        ``stages`` limits the chain to its first stages; ``return_all`` returns every
        stage's output. Probabilistic stages give the prior mean unless ``posterior``.
        ``axes`` names the axes of arrays (default: the cascade's ``axes``).
        """
        if not self.models:
            raise InputError("cascade has no trained stages; call fit() or from_models()")
        single = isinstance(images, np.ndarray)
        prepared = self._images(images, allow_constant=True, axes=axes)
        current = prepared.arrays
        steps = []
        for model in self.models[:stages]:
            source = prepared.arrays if model.method.needs_noisy else current
            current, _ = stage_outputs(model, source, self.posterior, prepared.axes)
            steps.append([prepared.to_image(i, a) for i, a in enumerate(current)])
        steps = [s[0] if single else s for s in steps]
        return steps if return_all else steps[-1]

    def fit(self, images: object, *, output_dir: str | Path | None = None,
            reference: object = None, data_range: float | None = None,
            names: Sequence[str] | None = None, resume: bool = False, overwrite: bool = False,
            progress: bool = True) -> Cascade:
        """Train every stage on its predecessor's output; write models, TIFFs and manifest.

        ``output_dir`` gets ``stageN-variant/`` folders (``model/``, ``<name>.tif``,
        ``<name>_std.tif`` for probabilistic stages) and ``cascade.json``; ``reference``
        (clean images, one per input) adds true metrics. ``resume`` reuses finished
        stages and continues an interrupted one from its checkpoint.
        """
        self.models, self.model_paths = [], []
        return self._run(True, images, output_dir, reference, data_range, names, resume,
                         overwrite, progress)

    def apply(self, images: object, *, output_dir: str | Path | None = None,
              reference: object = None, data_range: float | None = None,
              names: Sequence[str] | None = None, overwrite: bool = False,
              progress: bool = True) -> Cascade:
        """Inference only: run the trained models in sequence, with the same artefacts."""
        if not self.models:
            raise InputError("cascade has no trained stages; use from_models() or fit()")
        return self._run(False, images, output_dir, reference, data_range, names, False,
                         overwrite, progress)

    # -- the loop ----------------------------------------------------------------
    def _run(self, training: bool, images, output_dir, reference, data_range, names,
             resume: bool, overwrite: bool, progress: bool) -> Cascade:
        prepared = self._images(images)
        named = list(zip(prepared.names, prepared.arrays, strict=True))
        inputs = prepared.arrays
        names = list(names) if names is not None else image_names(named)
        if len(names) != len(inputs):
            raise InputError(f"names: {len(names)} given for {len(inputs)} image(s)")
        if training:  # fail before any work, naming the file (stages train on arrays)
            patch = max(self.config(k, s).patch_size for k in range(len(self.specs))
                        for s in (self.specs if self.auto else [self.specs[k]]))
            first = self.specs if self.auto else self.specs[:1]
            for spec in first:
                cfg = self.config(0, spec)
                if method_class(cfg.variant).needs_noisy:
                    raise InputError(f"stage 1: method {cfg.variant!r} learns from an earlier "
                                     f"stage's output; put another method before it")
            for name, arr in named:
                if min(arr.shape[-2:]) < patch:
                    raise InputError(f"{name}: image {arr.shape[-2]}x{arr.shape[-1]} is smaller "
                                     f"than the patch size {patch}; use a smaller --patch-size")
        refs = reference_samples(reference, prepared) if reference is not None else None
        if refs is not None and data_range is None:
            data_range = max(default_data_range(r) for r in refs)
        out = Path(output_dir) if output_dir is not None else None
        old = _prepare_dir(out, resume, overwrite)
        info = [{"name": str(n), "file": f, "shape": list(shape), "sha1": digest(a)}
                for (n, a), f, shape in zip(named, names, prepared.shapes, strict=True)]
        if old and [i["sha1"] for i in old.get("inputs", [])] != [i["sha1"] for i in info]:
            raise InputError(f"{out}: the cascade there was run on other images; use "
                             f"--overwrite to start over")
        done = {e["dir"]: e for e in old.get("stages", []) + old.get("rejected", [])}
        self.manifest = m = {
            "format_version": 1, "package_version": __version__,
            "mode": "progressive-retraining" if training else "inference-only",
            "posterior": self.posterior, "inputs": info, "data_range": data_range,
            "gt_free": {**asdict(self.gt_free), "score": "mean squared difference to the "
                        "original noisy value at hidden pixels (= MSE + noise variance)",
                        "probabilistic_stages": "scored on the prior mean",
                        "standard_error": f"over {BLOCK}x{BLOCK}-pixel blocks; two stages "
                        f"whose paired difference is within {SIGNIFICANT:g} standard errors "
                        f"are indistinguishable"},
            "input_metrics": score(inputs, refs, data_range)[0] if refs else None,
            "auto": {"candidates": [self.config(0, s).variant for s in self.specs],
                     "max_stages": self.max_stages, "stopped": None} if self.auto else None,
            "stages": [], "rejected": [], "best_stage": None,
        }
        tracker = SelfSupervisedError(inputs, self.gt_free)
        current, parent, best = inputs, "noisy", float("inf")
        depth = self.max_stages if self.auto else len(self.specs)
        self.outputs, models, paths = [], [], []
        for k in range(depth):
            tried = []
            for spec in self.specs if self.auto else [self.specs[k]]:
                given = None if training else self.models[k]
                cfg = given.config if given is not None else self.config(k, spec)
                sdir = stage_dir_name(k, cfg.variant)
                prev = done.get(sdir, {})
                reuse = (prev.get("input"), prev.get("config")) == (
                    parent, cfg.model_dump(mode="json"))
                res = run_stage(current, cfg, out / sdir if out else None, names, model=given,
                                posterior=self.posterior, resume=resume, overwrite=overwrite,
                                progress=progress, reuse_outputs=reuse, retrain=k > 0,
                                images=prepared, device=self.device, noisy=inputs)
                where = self.model_paths[k] if given else (f"{sdir}/model" if out else None)
                gt, states = tracker.evaluate(estimate_fn(res.model, prepared.axes),
                                              from_noisy=res.model.method.needs_noisy)
                entry = self._entry(k, sdir, where, parent, res, gt, refs, data_range, names)
                tried.append((gt, states, res, entry))
                if progress:
                    report_stage(entry)
            gt, states, res, entry = min(tried, key=lambda t: t[0])
            diff, se = compare(gt, best) if k > 0 else (0.0, 0.0)
            if self.auto and k > 0 and not diff < -SIGNIFICANT * se:
                m["rejected"] += [t[3] for t in tried]
                m["auto"]["stopped"] = (
                    f"GT-free score stopped improving at stage {k + 1}" if diff >= 0 else
                    f"GT-free score of stage {k + 1} is indistinguishable from stage {k}'s "
                    f"(difference {diff:.4g}, standard error {se:.2g})")
                break
            tracker.commit(states)
            m["stages"].append(entry)
            m["rejected"] += [t[3] for t in tried if t[3] is not entry]
            models.append(res.model)
            paths.append(entry["model"])
            self.outputs.append([prepared.to_image(i, o) for i, o in enumerate(res.outputs)])
            current, parent, best = res.outputs, entry["dir"], min(best, gt)
            self._save(out)
        if self.auto and m["auto"]["stopped"] is None:
            m["auto"]["stopped"] = f"reached max_stages ({self.max_stages})"
        rank_stages(m)
        m["final_outputs"] = m["stages"][-1]["outputs"]
        self.models = models
        self.model_paths = paths if training else self.model_paths[: len(models)]
        self._save(out)
        return self

    def _entry(self, k: int, sdir: str, model_path: str | None, parent: str,
               res: StageResult, gt: float, refs, data_range, names) -> dict[str, Any]:
        cfg = res.model.config
        metrics, per_image = score(res.outputs, refs, data_range) if refs else (None, None)
        return {
            "stage": k + 1, "variant": cfg.variant, "dir": sdir, "model": model_path,
            "input": parent, "status": "done", "trained": res.trained,
            "config": cfg.model_dump(mode="json"), "seed": cfg.seed, "epochs": cfg.epochs,
            "train_seconds": round(res.model.train_seconds, 3),
            "stage_seconds": round(res.seconds, 3),
            "outputs": [f"{sdir}/{n}.tif" for n in names],
            "uncertainty": [f"{sdir}/{n}_std.tif" for n in names] if res.stds else None,
            "gt_free_error": gt, "gt_free_se": getattr(gt, "se", None),
            "metrics": metrics, "metrics_per_image": per_image,
        }

    def _save(self, out: Path | None) -> None:
        if out is not None:
            text = json.dumps(jsonable(self.manifest), indent=2, allow_nan=False)
            atomic_write_text(out / MANIFEST, text + "\n", overwrite=True)


__all__ = [
    "MANIFEST", "Cascade", "GTFreeOptions", "SelfSupervisedError", "StageResult",
    "gt_free_errors", "ranking_note", "run_stage", "versus_best", "stage_config", "stage_outputs",
]
