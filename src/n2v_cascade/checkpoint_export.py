"""A loadable model folder from the checkpoint of an interrupted training run.

Ctrl-C (or a kill) leaves ``checkpoint.pt`` but no ``model.json``. ``train --resume``
finishes the run; :func:`export_checkpoint` (``n2v-cascade finish``) instead keeps what
is there: the checkpoint's weights (their moving average when the run kept one, as
training does at its end) and its config. The normalisation and the noise model are not
in the checkpoint: they are fitted again on the training images, which determine them
exactly (the same deterministic fits as in training), so old checkpoints work too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError, OutputExistsError

if TYPE_CHECKING:
    from .model import Model

CHECKPOINT = "checkpoint.pt"


def interrupted_message(path: Path) -> str:
    """The one-line explanation for a folder holding a checkpoint but no model."""
    return (f"{path}: training was interrupted ({CHECKPOINT} but no model.json); finish it "
            f"with 'n2v-cascade train IMAGES -o {path} --resume' (same images and options), "
            f"or save the checkpoint's weights as the model with 'n2v-cascade finish {path} "
            f"IMAGES'")


def export_checkpoint(folder: str | Path, images: object) -> Model:
    """Write ``folder``'s model files from ``folder/checkpoint.pt``; return the Model.

    Parameters
    ----------
    folder
        A ``train`` output folder holding ``checkpoint.pt`` and no finished model.
    images
        The training images (array(s) or path(s), as given to ``train``); the
        normalisation and, for probabilistic models, the noise model are fitted on them.
    """
    import torch

    from .config import make_config
    from .data import as_slices
    from .model import META, Model, estimate_noise_model, load_images_arg
    from .normalize import Normalizer
    from .variants import get_variant

    folder = Path(folder)
    ckpt = folder / CHECKPOINT
    if (folder / META).is_file():
        raise OutputExistsError(f"{folder}: already holds a finished model; nothing to finish")
    if not ckpt.is_file():
        raise ModelError(f"{folder}: no {CHECKPOINT} to make a model from")
    named = load_images_arg(images)
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=True)
        config = make_config(str(ckpt), **payload["config"])
        state = payload["state"]
        weights = payload["network"]
        if payload.get("ema") is not None:  # AveragedModel keys: module.<name>, n_averaged
            weights = {k.removeprefix("module."): v for k, v in payload["ema"].items()
                       if k.startswith("module.")}
        network = get_variant(config).build_network()
        network.load_state_dict(weights)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
        raise ModelError(f"{ckpt}: not a usable checkpoint ({type(exc).__name__})") from None
    raw = as_slices([arr for _, arr in named])
    names = [name for name, arr in named for _ in range(1 if arr.ndim == 2 else arr.shape[0])]
    noise = (estimate_noise_model(raw, config.noise_model, names)
             if get_variant(config).probabilistic else None)
    network.eval()
    model = Model(network, config, Normalizer.fit(raw), noise=noise,
                  history=list(state.get("history", [])))
    model.train_seconds = float(state.get("seconds", 0.0))
    model.save(folder)
    return model
