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
from .model import CHECKPOINT

if TYPE_CHECKING:
    from .model import Model
def export_checkpoint(folder: str | Path, images: object, axes: str | None = None) -> Model:
    """Write ``folder``'s model files from ``folder/checkpoint.pt``; return the Model.

    Parameters
    ----------
    folder
        A ``train`` output folder holding ``checkpoint.pt`` and no finished model.
    images
        The training images (array(s) or path(s), as given to ``train``); the
        normalisation and, for probabilistic models, the noise model are fitted on them.
    axes
        Axes of the images, as given to ``train`` (files: their own by default).
    """
    from .config import make_config
    from .inputs import load_inputs
    from .methods import get_method
    from .model import META, Model
    from .noise import estimate_noise_model
    from .normalize import Normalizer
    from .runtime import load

    folder = Path(folder)
    ckpt = folder / CHECKPOINT
    if (folder / META).is_file():
        raise OutputExistsError(f"{folder}: already holds a finished model; nothing to finish")
    if not ckpt.is_file():
        raise ModelError(f"{folder}: no {CHECKPOINT} to make a model from")
    try:
        payload = load(ckpt)
        config = make_config(str(ckpt), **payload["config"])
        state = payload["state"]
        weights = payload["network"]
        if payload.get("ema") is not None:  # AveragedModel keys: module.<name>, n_averaged
            weights = {k.removeprefix("module."): v for k, v in payload["ema"].items()
                       if k.startswith("module.")}
        network = get_method(config).build_network()
        network.load_state_dict(weights)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable checkpoint
        raise ModelError(f"{ckpt}: not a usable checkpoint ({type(exc).__name__})") from None
    from .training_data import training_samples

    raw, names = training_samples(load_inputs(images, axes, config.dims), config)
    noise = (estimate_noise_model(raw, config.noise_model, names)
             if get_method(config).predicts_variance else None)
    network.eval()
    model = Model(network, config, Normalizer.fit(raw), noise=noise,
                  history=list(state.get("history", [])))
    model.train_seconds = float(state.get("seconds", 0.0))
    model.save(folder)
    return model
