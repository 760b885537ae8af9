"""A training run's folder and checkpoint.

The folder is checked before any work and claimed only once the inputs are known to be
good; a checkpoint resumes only the recipe it was made with; Ctrl-C becomes a flag that
the loop checks between steps, so a checkpoint is always consistent.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from .config import TrainConfig
from .errors import InputError, OutputExistsError
from .model import CHECKPOINT
from .runtime import load
from .safe_write import check_output_folder


def prepare_output(out: Path | None, resume: bool, overwrite: bool) -> Path | None:
    """Check the output folder and return the checkpoint path; nothing is written yet.

    ``resume`` without a checkpoint (e.g. killed before the first epoch ended) starts
    from scratch with a warning, unless a finished model is there (needs ``overwrite``).
    """
    if out is None:
        if resume:
            raise InputError("resume needs an output folder holding a checkpoint")
        return None
    check_output_folder(out, busy=False, hint="")
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


def claim_output(out: Path | None, fresh: bool) -> None:
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


def stored_recipe(output_dir: str | Path) -> dict | None:
    """The config values a checkpoint in ``output_dir`` was made with (None: no checkpoint).

    ``--resume`` starts from these, so the recipe need not be typed again.
    """
    path = Path(output_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        saved = load(path, weights_only=False)["config"]
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
        raise InputError(f"{path}: not a usable checkpoint ({type(exc).__name__})") from None
    return dict(saved)


def load_checkpoint(path: Path, config: TrainConfig, network, optimizer, generator
                     ) -> tuple[dict, dict | None, dict]:
    """Restore a run from ``path``; return its state, its moving average (or None) and
    its processes' entry (their count and random streams: ``distributed``)."""
    try:
        payload = load(path, weights_only=False)
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
    return (payload["state"], payload.get("ema") if config.ema_decay > 0 else None,
            payload.get("ranks", {"world_size": 1}))


@contextlib.contextmanager
def catch_sigint() -> Iterator[threading.Event]:
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
