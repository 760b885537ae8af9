"""One `train` run in two phases for spatially correlated noise: a masked method, then
``renoise`` on its output.

A blind-spot method that hides a correlated neighbourhood (``mask.struct: auto`` chose a
square) loses the detail inside it; ``renoise`` learns instead from the first phase's
estimate plus noise of the colour and level fitted from the data, and denoises the noisy
images themselves. So the second phase's model is the result: one model folder that
``denoise`` uses like any other, with the first phase's model kept in ``stage1/`` and the
plan of both in ``refine.json`` (written after the first step, when the inputs have been
read and checked; ``--resume`` follows it). The steps (and a time limit) are
split ``1 - SHARE`` / ``SHARE``; the split is in docs/DECISIONS.md.
"""

from __future__ import annotations

import json
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Literal

from .cascade_data import CascadeImages, prepare_images
from .checkpoints import prepare_output
from .config import DEFAULT_VARIANT, TrainConfig
from .errors import InputError
from .lazy_data import wants_lazy
from .methods import method_class
from .model import CHECKPOINT, META, Model
from .progress import RunProgress, note
from .safe_write import atomic_write_text
from .stages import same_config, stage_config, stage_outputs
from .training import train
from .training_data import settings_for_data

Refine = Literal["auto", "renoise", "none"]
REFINES: tuple[str, ...] = ("auto", "renoise", "none")
SHARE = 2 / 3  # of the epochs (and of a time limit) that the renoise phase gets
FIRST, PLAN = "stage1", "refine.json"

__all__ = ["PLAN", "REFINES", "SHARE", "is_refined", "train_refined"]


def is_refined(output_dir: str | Path | None) -> bool:
    """Whether ``output_dir`` holds (part of) a two-phase run: ``--resume`` follows it."""
    return output_dir is not None and (Path(output_dir) / PLAN).is_file()


def train_refined(images: object, config: TrainConfig | None = None, *,
                  refine: Refine = "auto", axes: str | None = None,
                  output_dir: str | Path | None = None, resume: bool = False,
                  overwrite: bool = False, progress: bool = True, device: str | None = None,
                  time_limit: float | None = None, **options) -> Model:
    """Train as :func:`~n2v_cascade.training.train` does, in two phases where they help.

    ``refine``: ``auto`` (what the ``train`` command does) runs the two phases when the
    method is the default one with ``auto`` square hiding and a 2-D network, channels are
    not joint and the images' noise is spatially correlated; ``renoise`` runs them for
    any method that needs no earlier output; ``none`` trains the one method. ``options``
    go to ``train`` (e.g. ``callbacks``: one that stops the first phase ends the run with
    that phase's model); images read block by block (``lazy``, zarr stores) and several
    processes train the one method.
    """
    if refine not in REFINES:
        raise InputError(f"refine must be one of {', '.join(REFINES)}, got {refine!r}")
    out = Path(output_dir) if output_dir is not None else None
    plan = _stored_plan(out) if resume and is_refined(out) else None
    config = plan[0] if plan else (config or TrainConfig())
    one = partial(_one, images, config, progress=progress, axes=axes, output_dir=out,
                  resume=resume, overwrite=overwrite, device=device, time_limit=time_limit,
                  **options)
    if plan is None:
        if refine == "none":
            return one(None)
        if wants_lazy(images, bool(options.get("lazy"))) or _world() > 1:
            if refine == "renoise":
                raise InputError("--refine renoise needs the images in memory and one "
                                 "process (it predicts on every training image)")
            return one(None)
        why, prepared = _why(images, config, axes, refine)
        if why is None or config.epochs < 2:
            return one(None if why is None else "one epoch cannot be split into two phases")
        plan = (config, stage_config("renoise", 1, config,
                                     retrain_epochs=config.epochs - _first_epochs(config)))
        if out is not None and (out / PLAN).exists() and not overwrite:
            raise InputError(f"{out}: holds a two-phase run already; use --resume to "
                             f"continue it or --overwrite to start over")
    else:
        why, prepared = "continuing the two-phase run of its refine.json", None
    run = RunProgress(2, enabled=progress, limit=time_limit, later_epochs=plan[1].epochs,
                      plan=f"then renoise for {plan[1].epochs} epoch(s) on its output "
                           f"({why}; --refine none: one model)")
    with closing(run):  # ended by the last phase, or here when the run stops early
        return _two(images, plan, run, progress, prepared, axes=axes, out=out,
                    resume=resume, overwrite=overwrite, device=device,
                    time_limit=time_limit, **options)


def _one(images: object, config: TrainConfig, why: str | None, *, progress: bool,
         **kwargs) -> Model:
    if why and progress:
        note(f"training one model: {why}")
    return train(images, config, progress=progress, **kwargs)


def _first_epochs(config: TrainConfig) -> int:
    return max(1, round(config.epochs * (1 - SHARE)))


def _why(images: object, config: TrainConfig, axes: str | None, refine: Refine
         ) -> tuple[str | None, CascadeImages | None]:
    """Why the run has two phases (None: it has one), and the images if they were read."""
    method = method_class(config.variant)
    if method.needs_noisy:
        raise InputError(f"method {config.variant!r} learns from an earlier stage's output; "
                         f"train it as a cascade stage (e.g. --stages structured,"
                         f"{config.variant})")
    if refine == "renoise":
        return "two phases: asked for", None
    if (config.variant != DEFAULT_VARIANT or not config.mask.struct_auto
            or config.channels == "joint"):  # measured on single-channel images only
        return None, None
    prepared = prepare_images(images, axes, config.dims, joint=False)
    if prepared.dims != 2:  # measured with 2-D networks only; 3-D: --refine renoise
        return None, prepared
    # what training will choose from these images: the same call, on the same samples
    struct = settings_for_data(config, prepared.arrays, prepared.names, False).mask.struct
    if struct in (None, "none"):
        return None, prepared
    return (f"two phases: the noise is spatially correlated ({struct} around each masked "
            f"pixel)", prepared)


def _two(images: object, plan: tuple[TrainConfig, TrainConfig], run: RunProgress,
         progress: bool, prepared: CascadeImages | None, *, axes: str | None, out: Path | None,
         resume: bool, overwrite: bool, device: str | None, time_limit: float | None,
         **options) -> Model:
    first_cfg, second_cfg = plan
    first_dir = out / FIRST if out is not None else None
    if out is not None and not resume:  # a busy folder fails before any training
        prepare_output(out, resume, overwrite)
    text = json.dumps({"first": first_cfg.model_dump(mode="json"),
                       "second": second_cfg.model_dump(mode="json")}, indent=1)

    def write_plan(info) -> bool:  # noqa: ARG001 - after the first step: inputs are good
        if out is not None and not (out / PLAN).is_file():
            atomic_write_text(out / PLAN, text, overwrite=True)
        return False

    callbacks = list(options.pop("callbacks", ()))
    first_run = first_cfg.model_copy(update={"epochs": _first_epochs(first_cfg)})
    first = _finished(first_dir, first_run) if resume else None
    if first is None:
        first = train(images, first_run, axes=axes, output_dir=first_dir, resume=resume,
                      overwrite=overwrite, progress=progress, device=device,
                      time_limit=_part(time_limit, 1 - SHARE),
                      callbacks=[write_plan, *callbacks], run=run, **options)
    else:
        if progress:
            note(run.settings(f"{first.config.variant}: the first phase is finished "
                              f"in {first_dir}"))
        run.skip(seconds=first.train_seconds)
    if first.history and first.history[-1].get("stopped") == "callback":
        return first  # a callback's stop ends the run (the model stays in stage1/)
    if prepared is None:  # read once: the first phase's estimate of each, and the noisy
        prepared = prepare_images(images, axes, first_cfg.dims, first_cfg.channels == "joint")
    targets, _ = stage_outputs(first, prepared.arrays, axes=prepared.axes)
    left = None if time_limit is None else time_limit - first.train_seconds
    again = resume and out is not None and any((out / n).exists() for n in (CHECKPOINT, META))
    model = train(targets, second_cfg, axes=prepared.axes, output_dir=out, resume=again,
                  overwrite=overwrite, progress=progress, device=device,
                  time_limit=_part(left, 1.0), noisy=list(prepared.arrays),
                  callbacks=callbacks, run=run, **options)
    model.train_seconds += first.train_seconds  # the run's training time, both phases
    return model


def _part(seconds: float | None, share: float) -> float | None:
    """A phase's share of a time limit (never zero: a phase always takes a step)."""
    return None if seconds is None else max(seconds * share, 1e-3)


def _finished(folder: Path | None, config: TrainConfig) -> Model | None:
    """The first phase's model when it finished with this recipe (None: train it)."""
    if folder is None or not (folder / META).is_file():
        return None
    model = Model.load(folder)
    return model if same_config(model.config, config) else None


def _stored_plan(out: Path) -> tuple[TrainConfig, TrainConfig]:
    path = out / PLAN
    try:
        saved = json.loads(path.read_text())
        return (TrainConfig.model_validate(saved["first"]),
                TrainConfig.model_validate(saved["second"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a readable two-phase plan ({type(exc).__name__}); "
                         f"use --overwrite to start over") from None


def _world() -> int:
    from .distributed import Session

    return Session.from_env().world
