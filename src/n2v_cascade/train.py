"""One training loop for every variant: patches -> variant batch -> network -> loss.

The loop knows variants only through :class:`~n2v_cascade.variants.Variant`. It writes
a checkpoint (atomically) at the end of every epoch and when interrupted with Ctrl-C,
resumes from one bit-identically (all random state lives in one torch.Generator that
is saved with it), and stops with a clear message if the loss diverges.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from .config import TrainConfig
from .data import PatchSampler, as_slices, default_steps_per_epoch, split_train_val
from .errors import InputError, N2VError, OutputExistsError, TrainingDivergedError
from .model import Model, estimate_noise_model, load_images_arg
from .models import fast_layout
from .normalize import Normalizer
from .variants import get_variant

CHECKPOINT = "checkpoint.pt"


class TrainingInterrupted(N2VError):
    """Training was stopped by the user; a checkpoint was written."""


def train(
    images: object,
    config: TrainConfig | None = None,
    *,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Model:
    """Train a denoiser on noisy images and return the trained :class:`Model`.

    Parameters
    ----------
    images
        An array (YX or SYX), a list of arrays, or file/folder path(s).
    config
        The recipe; ``TrainConfig()`` (paper defaults) if omitted.
    output_dir
        Where checkpoints and the final model folder go. Without it nothing is written.
    resume
        Continue from ``output_dir/checkpoint.pt`` (same config required).
    overwrite
        Allow replacing an existing model or checkpoint in ``output_dir``.
    """
    config = config or TrainConfig()
    named = load_images_arg(images)
    out = Path(output_dir) if output_dir is not None else None
    ckpt_path = _prepare_output(out, resume, overwrite)
    resume = resume and ckpt_path is not None and ckpt_path.exists()

    raw = as_slices([arr for _, arr in named])
    names = [name for name, arr in named for _ in range(1 if arr.ndim == 2 else arr.shape[0])]
    config = _check_noise_correlation(config, raw, names, progress)
    normalizer = Normalizer.fit(raw)
    variant = get_variant(config)
    divisor = 2 ** config.network.depth
    split = split_train_val([normalizer.apply(s) for s in raw], config.patch_size,
                            config.val_fraction, names, divisor=divisor)
    sampler = PatchSampler(split.train, config.patch_size, augment=config.augment)
    steps = config.steps_per_epoch or default_steps_per_epoch(
        sampler.n_pixels, config.patch_size, config.batch_size)
    noise = (estimate_noise_model(raw, config.noise_model, names) if variant.probabilistic
             else None)
    _claim_output(out, fresh=overwrite and not resume)  # only now: bad inputs write nothing

    torch.manual_seed(config.seed)
    network = variant.build_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "step": 0, "history": [], "seconds": 0.0}
    ema_state = None
    if resume:
        state, ema_state = _load_checkpoint(ckpt_path, config, network, optimizer, generator)

    model = Model(network, config, normalizer, noise=noise, history=state["history"])
    val_batches = _validation_batches(split.val, variant, config.seed)
    loop = _Loop(network, optimizer, variant, sampler, generator, config, ckpt_path, state)
    if ema_state is not None:
        loop.load_ema(ema_state, ckpt_path)
    with _catch_sigint() as interrupted:
        loop.run(steps, val_batches, interrupted, progress)
    network.load_state_dict(loop.final_weights())
    model.history = state["history"]
    model.train_seconds = state["seconds"]
    if out is not None:
        model.save(out, overwrite=True)
    return model


class _Loop:
    """The epoch/step loop with its checkpointing; kept apart so ``train`` stays readable."""

    def __init__(self, network, optimizer, variant, sampler, generator, config, ckpt_path, state):
        self.network, self.optimizer, self.variant = network, optimizer, variant
        self.sampler, self.generator, self.config = sampler, generator, config
        self.ckpt_path, self.state = ckpt_path, state
        self.autocast = config.precision == "bfloat16"
        # channels-last convolutions measured 1.1-1.8x faster on this CPU (benchmarks/RESULTS.md)
        self.network.to(memory_format=torch.channels_last)
        self.ema = (AveragedModel(network, multi_avg_fn=_ema_update(config.ema_decay))
                    if config.ema_decay > 0 else None)

    def final_weights(self) -> dict:
        """The weights the trained model gets: the moving average if enabled."""
        return (self.ema.module if self.ema is not None else self.network).state_dict()

    def load_ema(self, ema_state: dict, path: Path) -> None:
        """Restore the moving average from a checkpoint's ``ema`` entry."""
        try:
            self.ema.load_state_dict(ema_state)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
            raise InputError(f"{path}: not a usable checkpoint ({type(exc).__name__})") from None

    def run(self, steps: int, val_batches, interrupted: threading.Event, progress: bool) -> None:
        cfg, state = self.config, self.state
        for epoch in range(state["epoch"], cfg.epochs):
            t0 = time.perf_counter()
            self.network.train()
            losses: list[float] = state.pop("partial_losses", [])
            bar = tqdm(range(state["step"], steps), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not progress, leave=False, unit="step")
            for step in bar:
                loss = self._step()
                if not math.isfinite(loss):
                    self._diverged(epoch, step, loss)
                losses.append(loss)
                bar.set_postfix(loss=f"{loss:.4f}")
                if interrupted.is_set():
                    state.update(step=step + 1, partial_losses=losses)
                    state["seconds"] += time.perf_counter() - t0
                    self._checkpoint()
                    where = f" to {self.ckpt_path}" if self.ckpt_path else ""
                    raise TrainingInterrupted(
                        f"interrupted at epoch {epoch + 1}, step {step + 1}; checkpoint written"
                        f"{where}; continue with --resume")
            bar.close()
            val = self._validate(val_batches)
            state["seconds"] += time.perf_counter() - t0
            state["history"].append({
                "epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val,
                "seconds": round(state["seconds"], 3)})
            if progress:
                vtxt = f", val {val:.4f}" if val is not None else ""
                tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses):.4f}{vtxt}")
            state.update(epoch=epoch + 1, step=0)
            self._checkpoint()

    def _step(self) -> float:
        patches = self.sampler.sample(self.config.batch_size, self.generator)
        inputs, target, mask = self.variant.training_batch(patches, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            output = self.network(fast_layout(inputs))
        loss = self.variant.loss(output.float(), target, mask)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.network)
        return value

    @torch.no_grad()
    def _validate(self, val_batches) -> float | None:
        if not val_batches:
            return None
        network = self.ema.module if self.ema is not None else self.network
        network.eval()
        total = 0.0
        for inputs, target, mask in val_batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                output = network(fast_layout(inputs))
            total += float(self.variant.loss(output.float(), target, mask))
        return total / len(val_batches)

    def _checkpoint(self) -> None:
        if self.ckpt_path is None:
            return
        from .io import atomic_path

        payload = {
            "state": self.state, "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
            "config": self.config.model_dump(mode="json"),
        }
        if self.ema is not None:
            payload["ema"] = self.ema.state_dict()
        with atomic_path(self.ckpt_path, overwrite=True) as tmp:
            torch.save(payload, tmp)

    def _diverged(self, epoch: int, step: int, loss: float) -> None:
        kept = (f"; last good checkpoint kept at {self.ckpt_path}"
                if self.ckpt_path is not None and self.ckpt_path.exists() else "")
        raise TrainingDivergedError(
            f"training diverged at epoch {epoch + 1}, step {step + 1} (loss {loss}); "
            f"try a lower --learning-rate (now {self.config.learning_rate:g}) or check that "
            f"the images are not dominated by outliers{kept}")


def _check_noise_correlation(config: TrainConfig, raw: Sequence[np.ndarray], names: list[str],
                             progress: bool) -> TrainConfig:
    """Resolve ``blind_radius: auto``; warn when correlated noise is not accounted for."""
    from .config import update_config
    from .correlation import suggest_blind_radius

    radius, corr = suggest_blind_radius(raw)
    blind = config.resolved_backbone == "blindspot"
    if blind and config.resolved_blind_radius == "auto":
        if progress:
            tqdm.write(f"blind-spot radius {radius} (noise correlation up to "
                       f"{corr[:, 0].max():.2f} between neighbours)")
        return update_config(config, "blind_radius auto", network={"blind_radius": radius})
    handled = (config.resolved_blind_radius >= radius if blind else
               config.mask.struct is not None or config.mask.struct_kernel is not None)
    if radius and not handled:
        worst = int(corr.reshape(len(corr), -1).max(axis=1).argmax())
        lag = int(corr[worst].max(axis=1).argmax())
        fix = ("--blind-radius auto" if blind else
               "--mask horizontal:N / vertical:N (structN2V) or the blind-spot backbone "
               "with --blind-radius auto")
        warnings.warn(
            f"{names[worst]}: the noise looks spatially correlated (correlation "
            f"{corr[worst, lag, 0]:.2f} along Y, {corr[worst, lag, 1]:.2f} along X between "
            f"pixels {lag + 1} apart); a blind-spot "
            f"method then learns to copy the noise - consider {fix}", UserWarning, stacklevel=3)
    return config


def _ema_update(decay: float):
    """In-place EMA step for ``AveragedModel``: lerp towards the new weights.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so that short runs are not
    dominated by the random initial weights.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n) -> None:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        for avg, cur in zip(averaged, current, strict=True):
            avg.lerp_(cur, 1.0 - d)

    return update


def _validation_batches(val: Sequence[np.ndarray], variant, seed: int) -> list:
    """Fixed masked validation batches (same masks every epoch)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    batches = []
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for patch in val:
        by_shape.setdefault(patch.shape, []).append(patch)
    for group in by_shape.values():
        for i in range(0, len(group), 16):
            x = torch.from_numpy(np.stack(group[i: i + 16])[:, None].copy())
            batches.append(variant.training_batch(x, gen))
    return batches


def _prepare_output(out: Path | None, resume: bool, overwrite: bool) -> Path | None:
    """Check the output folder and return the checkpoint path; nothing is written yet.

    ``resume`` without a checkpoint (e.g. killed before the first epoch ended) starts
    from scratch with a warning, unless a finished model is there (needs ``overwrite``).
    """
    if out is None:
        if resume:
            raise InputError("resume needs an output folder holding a checkpoint")
        return None
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    ckpt = out / CHECKPOINT
    if resume and ckpt.exists():
        return ckpt
    busy = [p.name for p in (ckpt, out / "model.json") if p.exists()]
    if busy and resume and not overwrite:
        raise OutputExistsError(f"{out}: holds a finished model but no {CHECKPOINT} to resume "
                                f"from; use --overwrite to train again")
    if busy and not overwrite:
        raise OutputExistsError(
            f"{out}: already holds {', '.join(busy)}; use --resume to continue or "
            f"--overwrite to start over")
    if resume:
        warnings.warn(f"{out}: no {CHECKPOINT} to resume from; starting from scratch",
                      UserWarning, stacklevel=3)
    return ckpt


def _claim_output(out: Path | None, fresh: bool) -> None:
    """Create the output folder; drop stale temporary files and (``fresh``) the checkpoint.

    Temporary files (hidden ``.name.tmp-*``) are what a killed write leaves behind; they
    are never read, so removing them is always safe.
    """
    if out is None:
        return
    ckpt = out / CHECKPOINT
    if fresh and ckpt.exists():
        ckpt.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp-*"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _load_checkpoint(path: Path, config: TrainConfig, network, optimizer, generator
                     ) -> tuple[dict, dict | None]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        saved = payload["config"]
        network.load_state_dict(payload["network"])
        optimizer.load_state_dict(payload["optimizer"])
        generator.set_state(payload["generator"])
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
        raise InputError(f"{path}: not a usable checkpoint ({type(exc).__name__})") from None
    # Only ``epochs`` may change: the learning rate is constant, so continuing a run to
    # more epochs gives exactly the weights of a run asked for that many epochs at once.
    current = config.model_dump(mode="json")
    diff = sorted(k for k in saved if k != "epochs" and saved[k] != current.get(k))
    if diff:
        raise InputError(f"{path}: checkpoint was made with a different config ({', '.join(diff)})")
    done = int(payload["state"]["epoch"])
    if config.epochs < done:
        raise InputError(f"{path}: checkpoint has already trained {done} epochs; "
                         f"epochs must be at least {done} to resume (got {config.epochs})")
    # a checkpoint without an average (ema_decay 0, or written before it existed) was
    # refused above if the config differs; otherwise the average starts from its weights
    return payload["state"], payload.get("ema") if config.ema_decay > 0 else None


@contextlib.contextmanager
def _catch_sigint() -> Iterator[threading.Event]:
    """Turn Ctrl-C into a flag checked between steps, so a checkpoint is always consistent."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):  # noqa: ARG001
        if flag.is_set():  # second Ctrl-C: stop at once
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
