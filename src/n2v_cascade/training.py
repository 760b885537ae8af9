"""One training loop for every method: patches -> method's step -> network -> loss.

The loop knows methods only through :class:`~n2v_cascade.methods.base.Method`. It writes
a checkpoint (atomically) at the end of every epoch and when interrupted with Ctrl-C,
resumes from one bit-identically (all random state lives in one torch.Generator, one
per process when several train together, that is saved with it), stops with a clear
message if the loss diverges, and stops cleanly (model saved, checkpoint kept for
``resume``) at a time limit or when a callback asks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from .checkpoints import (
    catch_sigint,
    claim_output,
    load_checkpoint,
    prepare_output,
)
from .config import TrainConfig
from .data import default_steps_per_epoch
from .distributed import Session, unwrap
from .errors import InputError, N2VError, TrainingDivergedError
from .inputs import load_inputs
from .lazy_data import lazy_training_data, open_lazy, wants_lazy
from .methods import get_method
from .model import Model
from .noise import estimate_noise_model
from .progress import RunProgress, clock, note
from .run_settings import resolve_precision, settings_line
from .runtime import (
    Runner,
    grad_scaler,
    place,
    resolve_device,
)
from .schedule import clock_fraction, lr_factor, progress_sources
from .training_data import in_memory_data, noisy_samples, validation_patches


class TrainingInterrupted(N2VError):
    """Training was stopped by the user; a checkpoint was written."""


@dataclass
class StepInfo:
    """What a training callback sees after each step.

    ``weights()`` returns a copy of the weights the model would get now (the moving
    average when enabled). A callback that returns True stops training cleanly.
    """

    step: int            # global step, 1-based
    total_steps: int
    epoch: int           # 1-based
    epochs: int
    loss: float
    seconds: float       # training seconds so far (this run and resumed ones)
    step_seconds: float  # wall time of this step
    step_cpu_seconds: float  # CPU time of this step divided by the torch threads
    weights: Callable[[], dict]
    phase: int           # this training's place in a run of several (train_refined's)
    phases: int
    run_step: int        # the whole run's step and total (a lone training: step, total_steps)
    run_total_steps: int


Callback = Callable[[StepInfo], "bool | None"]


def train(
    images: object,
    config: TrainConfig | None = None,
    *,
    axes: str | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    time_limit: float | None = None,
    callbacks: Sequence[Callback] = (),
    lazy: bool = False,
    noisy: object = None,
    run: RunProgress | None = None,
) -> Model:
    """Train a denoiser on noisy images and return the trained :class:`Model`.

    Parameters
    ----------
    images
        An array, a list of arrays, or file/folder path(s). Zarr stores (OME-Zarr or a
        plain zarr array) are read lazily, as with ``lazy``.
    config
        The recipe; ``TrainConfig()`` (paper defaults) if omitted.
    axes
        Axes of array inputs (e.g. ``"YX"``, ``"SYX"``, ``"TCYX"``); by default YX for
        2-D and SYX (a stack of images) for 3-D arrays.
    output_dir
        Where checkpoints and the final model folder go. Without it nothing is written.
    resume
        Continue from ``output_dir/checkpoint.pt`` (same config required).
    overwrite
        Allow replacing an existing model or checkpoint in ``output_dir``.
    device
        Where to train: ``auto``/None (CUDA, then MPS, then CPU), ``cpu``, ``cuda:N``...
    time_limit
        Seconds of training after which the run stops cleanly with the model so far.
    callbacks
        Called with a :class:`StepInfo` after every step; returning True stops cleanly.
    lazy
        Read TIFF files (and zarr stores) block by block instead of whole: training draws
        its patches from a few random blocks of storage chunks at a time (the rule is in
        :mod:`n2v_cascade.lazy_data`).
    noisy
        The noisy images behind ``images`` when those are an earlier denoiser's output
        (one per image, same shapes): methods with ``needs_noisy`` (``renoise``) fit
        their noise model from both; other methods ignore it.
    run
        The progress of a run this training is one phase of (one bar, one time left,
        the run's step in :class:`StepInfo`); None: its own.

    Started by ``torchrun`` or ``n2v-cascade train --processes N`` (or in a process group
    already set up), every process calls this and they train one model together; only
    rank 0 writes and prints (see :mod:`n2v_cascade.distributed` for the rules).
    """
    config = config or TrainConfig()
    session = Session.from_env()  # one process, or one of torchrun's / --processes
    session.batch(config.batch_size)  # a global batch that does not split is refused now
    progress = progress and session.writes
    lazy = wants_lazy(images, lazy)
    inputs = (open_lazy(images, axes, config.dims) if lazy
              else load_inputs(images, axes, config.dims))
    out = Path(output_dir) if output_dir is not None else None
    ckpt_path = prepare_output(out, resume, overwrite)
    resume = resume and ckpt_path is not None and ckpt_path.exists()
    if time_limit is not None and not time_limit > 0:
        raise InputError(f"time limit must be positive, got {time_limit}")

    data = (lazy_training_data if lazy else in_memory_data)(config, inputs, progress)
    config, sampler, patch = data.config, data.sampler, data.patch
    method = get_method(config)
    if method.needs_noisy:
        if noisy is None or lazy:
            raise InputError(f"method {method.name!r} learns from an earlier stage's output "
                             f"beside the noisy images: use it as a later cascade stage "
                             f"(e.g. --stages structured,{method.name})")
        text = method.fit_noise(
            [data.normalizer.apply(s) for s in data.raw],
            noisy_samples(data, load_inputs(noisy, axes, config.dims)), data.patch)
        if text and progress:
            note(text)
    steps = config.steps_per_epoch or default_steps_per_epoch(
        sampler.n_pixels, patch, config.batch_size)
    noise = (estimate_noise_model(data.raw, config.noise_model, data.names)
             if method.predicts_variance else None)
    device = resolve_device(device)
    with session.joined(device) as device:
        config, why = session.from_first(
            resolve_precision(config, device, ckpt_path if resume else None))
        if session.writes:  # only now: bad inputs write nothing
            claim_output(out, fresh=overwrite and not resume)
        run = run or RunProgress(enabled=progress, limit=time_limit)
        if progress:
            note(run.settings(settings_line(config, steps, device, why, data.shown, patch,
                                            session.world), time_limit))

        torch.manual_seed(config.seed)
        network = place(method.build_network(), device, config.precision)
        optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
        generator = torch.Generator().manual_seed(config.seed)
        state = {"epoch": 0, "step": 0, "history": [], "seconds": 0.0}
        ema_state, saved = None, None
        if resume:
            state, ema_state, saved = load_checkpoint(ckpt_path, config, network, optimizer,
                                                      generator)
        start = state["epoch"] * steps + state["step"]
        session.seed_generator(generator, config.seed, start, saved)
        sampler.seek(start)  # a lazy sampler's blocks follow the step
        loop = _Loop(Runner(session.wrap(network), device, config.precision), optimizer,
                     method, sampler, generator, config, ckpt_path, state, session)
        if ema_state is not None:
            loop.load_ema(ema_state, ckpt_path)
        val_batches = validation_patches(data.val, sampler.channels)
        with catch_sigint() as interrupted:
            loop.run(steps, val_batches, interrupted, progress, time_limit, list(callbacks),
                     run)
        network.load_state_dict(loop.final_weights())
        model = Model(network, config, data.normalizer, noise=noise, history=state["history"],
                      device=device)
        model.train_seconds = state["seconds"]
        if out is not None and session.writes:
            model.save(out, overwrite=True)
        session.barrier()  # the others return once the model is there
    return model


class _Loop:
    """The epoch/step loop with its checkpointing; kept apart so ``train`` stays readable."""

    def __init__(self, run: Runner, optimizer, method, sampler, generator, config, ckpt_path,
                 state, session: Session | None = None):
        self.run_net, self.network = run, unwrap(run.network)  # run.network may be DDP
        self.session = session or Session()
        self.batch = self.session.batch(config.batch_size)  # this process's share
        self.optimizer, self.method = optimizer, method
        self.sampler, self.generator, self.config = sampler, generator, config
        self.ckpt_path, self.state = ckpt_path, state
        self.ema = (AveragedModel(self.network, multi_avg_fn=_ema_update(config.ema_decay))
                    if config.ema_decay > 0 else None)
        self.threads = max(1, torch.get_num_threads())
        self.scaler = grad_scaler(run.device, config.precision)
        if "scaler" in state:  # a float16 run resumed: its loss scale goes on
            self.scaler.load_state_dict(state["scaler"])

    def final_weights(self) -> dict:
        """The weights the trained model gets: the moving average if enabled."""
        return (self.ema.module if self.ema is not None else self.network).state_dict()

    def load_ema(self, ema_state: dict, path: Path) -> None:
        """Restore the moving average from a checkpoint's ``ema`` entry."""
        try:
            self.ema.load_state_dict(ema_state)
        except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
            raise InputError(f"{path}: not a usable checkpoint ({type(exc).__name__})") from None

    def run(self, steps: int, val_batches, interrupted: threading.Event, progress: bool,
            time_limit: float | None, callbacks: list[Callback], run: RunProgress) -> None:
        cfg, state = self.config, self.state
        total = cfg.epochs * steps
        start = time.perf_counter()
        first = state["epoch"] * steps + state["step"]
        run.start(total, first, steps)
        clocks = progress_sources(callbacks)
        try:
            for epoch in range(state["epoch"], cfg.epochs):
                t0 = time.perf_counter()
                self.run_net.network.train()
                losses: list[float] = state.pop("partial_losses", [])
                for step in range(state["step"], steps):
                    c0, w0 = time.process_time(), time.perf_counter()
                    self._schedule((epoch * steps + step) / total, w0 - start, time_limit,
                                   clocks)
                    loss = self._step()
                    wall = time.perf_counter() - w0
                    if not math.isfinite(loss):
                        self._diverged(epoch, step, loss)
                    losses.append(loss)
                    left = run.left(time.perf_counter() - start)
                    run.update(epoch=f"{epoch + 1}/{cfg.epochs}",
                               **{self.method.loss_name: f"{loss:.4f}"},
                               **({} if left is None else {"limit": clock(left)}))
                    seconds = state["seconds"] + time.perf_counter() - t0
                    info = StepInfo(epoch * steps + step + 1, total, epoch + 1, cfg.epochs,
                                    loss, seconds, wall,
                                    (time.process_time() - c0) / self.threads,
                                    self.final_weights, run.index, run.phases,
                                    run.n, run.total)
                    stop = any([bool(cb(info)) for cb in callbacks])
                    timed_out = (time_limit is not None
                                 and time.perf_counter() - start >= time_limit)
                    # decided together: every process stops at the same step
                    asked, stop, timed_out = self.session.any_of(interrupted.is_set(), stop,
                                                                 timed_out)
                    if asked or stop or timed_out:
                        state.update(step=step + 1, partial_losses=losses)
                        state["seconds"] += time.perf_counter() - t0
                        self._checkpoint()
                        if asked:
                            where = f" to {self.ckpt_path}" if self.ckpt_path else ""
                            raise TrainingInterrupted(
                                f"interrupted at epoch {epoch + 1}, step {step + 1}; checkpoint "
                                f"written{where}; continue with --resume")
                        self._stopped(epoch, step, losses, "time limit" if timed_out
                                      else "callback", progress)
                        return
                val = self._validate(val_batches)
                state["seconds"] += time.perf_counter() - t0
                state["history"].append({
                    "epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val,
                    "seconds": round(state["seconds"], 3)})
                if progress:
                    vtxt = f", val {val:.4f}" if val is not None else ""
                    note(f"epoch {epoch + 1}/{cfg.epochs}: {self.method.loss_name} "
                         f"{np.mean(losses):.4f}{vtxt}")
                state.update(epoch=epoch + 1, step=0)
                self._checkpoint()
        finally:
            run.end(time.perf_counter() - start)  # the last phase's end closes the bar

    def _stopped(self, epoch: int, step: int, losses: list[float], reason: str,
                 progress: bool) -> None:
        """Record a clean early stop in the history (the checkpoint allows ``resume``)."""
        self.state["history"].append({
            "epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": None,
            "seconds": round(self.state["seconds"], 3), "stopped": reason,
            "step": step + 1})
        if progress:
            note(f"stopped by the {reason} at epoch {epoch + 1}, step {step + 1}")

    def _schedule(self, steps_done: float, elapsed: float, time_limit: float | None,
                  clocks: Sequence[Callable[[], float]]) -> None:
        """Set the learning rate for the fraction of the run done (never going back): by
        the steps, the time limit or a budget callback's ``progress()``."""
        if self.config.lr_schedule == "constant":
            return
        done, clocks_done = steps_done, clock_fraction(elapsed, time_limit, clocks)
        if clocks_done is not None:  # every process takes the same rate
            done = max(done, self.session.mean(clocks_done))
        done = max(min(done, 1.0), self.state.get("lr_fraction", 0.0))
        self.state["lr_fraction"] = done
        rate = self.config.learning_rate * lr_factor(self.config.lr_schedule, done)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _step(self) -> float:
        patches = self.sampler.sample(self.batch, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.method.step_loss(patches, self.generator, self.run_net)
        value = self.session.mean(float(loss.detach()))  # the loss of the global batch
        if not math.isfinite(value):  # then in every process: none waits in backward
            return value
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # float16: skipped when a gradient overflowed
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.network)
        return value

    @torch.no_grad()
    def _validate(self, val_batches) -> float | None:
        """Loss on fixed validation patches, with the same masks every epoch."""
        if not val_batches:
            return None
        network = self.ema.module if self.ema is not None else self.network
        network.eval()
        run = Runner(network, self.run_net.device, self.config.precision)
        gen = torch.Generator().manual_seed(self.config.seed + 7919)
        total = sum(float(self.method.step_loss(x, gen, run)) for x in val_batches)
        return total / len(val_batches)

    def _checkpoint(self) -> None:
        if self.ckpt_path is None:
            return
        ranks = self.session.checkpoint_entry(self.generator)  # every process takes part
        if self.session.writes:
            self._write_checkpoint(ranks)
        self.session.barrier()  # a stop right after leaves the checkpoint complete

    def _write_checkpoint(self, ranks: dict) -> None:
        from .safe_write import atomic_path

        if self.scaler.is_enabled():
            self.state["scaler"] = self.scaler.state_dict()
        payload = {
            "state": self.state, "network": self.network.state_dict(), "ranks": ranks,
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
