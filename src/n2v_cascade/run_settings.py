"""What a training run decides and says at its start: the precision it runs in, and its
whole recipe in one line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .checkpoints import stored_recipe
from .config import TrainConfig, update_config
from .methods import get_method
from .runtime import choose_precision, describe_device

__all__ = ["resolve_precision", "settings_line"]


def resolve_precision(config: TrainConfig, device: torch.device, checkpoint: Path | None
                       ) -> tuple[TrainConfig, str]:
    """Replace ``precision: auto`` by what runs fastest here (a resumed run keeps the
    checkpoint's); the saved config holds the precision used."""
    if config.precision == "auto" and checkpoint is not None:
        stored = (stored_recipe(checkpoint.parent) or {}).get("precision", "auto")
        if stored != "auto":
            return update_config(config, "checkpoint", precision=stored), "as the checkpoint"
    precision, why = choose_precision(config.precision, device)
    if precision != config.precision:
        config = update_config(config, "device", precision=precision)
    return config, why


def settings_line(config: TrainConfig, steps: int, device: torch.device, why: str,
                  samples: Sequence[np.ndarray], patch: Sequence[int] | None = None,
                  processes: int = 1) -> str:
    """The whole recipe of a training in one line, printed when it starts (with several
    processes: the split of the global batch and the learning rate, which is not scaled;
    :meth:`~n2v_cascade.progress.RunProgress.settings` adds the time limit)."""
    net = config.network
    patch = tuple(patch or (config.patch_size, config.patch_size))
    shapes = sorted({"x".join(map(str, s.shape)) for s in samples})
    blind = (f", blind radius {net.blind_radius}" if get_method(config).blind else "")
    split, lr = "", ""
    schedule = "" if config.lr_schedule == "constant" else f" ({config.lr_schedule} to 0)"
    if processes > 1:
        split = f" ({processes} processes x {config.batch_size // processes})"
        lr = " (not scaled: the batch is global)"
    return (f"training {config.variant}: {config.epochs} epochs x {steps} steps "
            f"({config.epochs * steps} steps) of {config.batch_size} patches "
            f"{'x'.join(map(str, patch))}{' (3-D)' if len(patch) == 3 else ''}{split}, "
            f"lr {config.learning_rate:g}{schedule}{lr}, network depth {net.depth} "
            f"width {net.width} growth {net.growth:g}{blind}, {config.precision} ({why}), "
            f"{describe_device(device)}, {len(samples)} image(s) "
            f"{', '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''}")
