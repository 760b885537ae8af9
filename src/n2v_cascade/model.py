"""A trained denoiser and its self-describing folder on disk.

The folder holds ``weights.pt`` (state dict), ``config.yaml`` (the full training
recipe) and ``model.json`` (normalisation statistics, estimated noise model, package
and format version, training history). ``model.json`` is written last, so a folder
without it is an incomplete save and is refused on load.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from . import __version__
from .config import NoiseModelConfig, TrainConfig, make_config
from .data import as_slices
from .errors import InputError, ModelError, OutputExistsError
from .models import fast_layout
from .normalize import Normalizer
from .predict import predict_tiled
from .variants import Variant, calibrate_variance, get_variant, posterior_mean

FORMAT_VERSION = 1
# Where the posterior mean takes its noise model from (see Model.denoise).
NOISE_SOURCES = ("stored", "image", "bootstrap")
WEIGHTS, CONFIG, META = "weights.pt", "config.yaml", "model.json"


class Model:
    """A trained network with everything needed to use it on new images."""

    def __init__(
        self, network: nn.Module, config: TrainConfig, normalizer: Normalizer,
        noise: dict | None = None, history: list | None = None,
    ) -> None:
        self.network = network
        self.config = config
        self.normalizer = normalizer
        self.noise = noise
        self.history = history or []
        self.train_seconds = 0.0
        self._radius: int | None = None

    @property
    def variant(self) -> Variant:
        return get_variant(self.config)

    # -- prediction --------------------------------------------------------------
    def receptive_radius(self) -> int:
        """How far (pixels) the network looks; tiles overlap by this much."""
        if self._radius is None:
            # Probed on a one-channel-wide twin: same kernels and strides, tiny activations.
            narrow = self.config.network.model_copy(update={"width": 1})
            with torch.random.fork_rng(devices=[]):  # its initial weights are not used
                twin = get_variant(self.config.model_copy(update={"network": narrow}))
                net = twin.build_network()
            self._radius = _probe_radius(net, 2 ** self.config.network.depth)
        return self._radius

    def predict(
        self, image: np.ndarray | str | Path, *, tile: int | None = 512,
        overlap: int | None = None,
        batch_size: int = 4, tta: bool = False, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Raw estimates in image units: ``mean``, and ``var`` (of the noisy value) if predicted.

        ``image`` is YX or SYX; outputs have the same shape.
        """
        return self._predict(_as_float_image(image), tile=tile, overlap=overlap,
                             batch_size=batch_size, tta=tta, progress=progress)

    def _predict(
        self, image: np.ndarray, *, tile: int | None = 512, overlap: int | None = None,
        batch_size: int = 4, tta: bool = False, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` on an image already checked by ``_as_float_image``."""
        if image.ndim == 3:
            parts = [self._predict(s, tile=tile, overlap=overlap, batch_size=batch_size,
                                   tta=tta, progress=progress) for s in image]
            return {k: np.stack([p[k] for p in parts]) for k in parts[0]}
        div = 2 ** self.config.network.depth
        overlap = self.receptive_radius() if overlap is None else overlap
        padded, crop = _pad_to_multiple(self.normalizer.apply(image), div)
        if tile is not None:
            # Tiles of at least 4x the overlap: exact, and at least a quarter of each is kept
            # (a tile barely above 2x the overlap would be exact but mostly wasted work).
            overlap = -(-overlap // div) * div
            tile = max(-(-tile // div) * div, 4 * overlap, div)
        self.network.eval()
        variant = self.variant

        self.network.to(memory_format=torch.channels_last)

        def fn(batch: torch.Tensor) -> torch.Tensor:
            out = variant.estimate(self.network(fast_layout(batch)))
            return torch.cat([out[k] for k in sorted(out, key=_order)], dim=1)

        out = predict_tiled(fn, padded, tile=tile, overlap=overlap, batch_size=batch_size,
                            tta=tta, progress=progress, divisor=div)[(slice(None), *crop)]
        del padded  # a full-size copy; free it before the outputs are converted back
        result = {"mean": self.normalizer.undo(out[0]).astype(np.float32, copy=False)}
        if out.shape[0] > 1:
            result["var"] = self.normalizer.undo_variance(out[1]).astype(np.float32, copy=False)
        return result

    def denoise(
        self, image: np.ndarray | str | Path, *, posterior: bool = False, return_std: bool = False,
        noise_model: str | Mapping[str, Any] = "stored", **kwargs,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Denoise a YX image or SYX stack, or an image file (image units in and out).

        ``posterior`` (probabilistic models) combines the predicted prior with a noise
        model and the observed pixel to return the posterior mean. ``noise_model`` is
        ``"stored"`` (estimated on the training data), ``"image"`` (estimated on this
        image: for data from several microscopes, whose noise differs), ``"bootstrap"``
        (fitted to this image's residual from the prior mean, as PN2V does; errs towards
        too much noise, the safe side), or a mapping like the stored one. ``return_std``
        also returns the per-pixel standard deviation of the estimate.
        """
        image = _as_float_image(image)
        est = self._predict(image, **kwargs)
        if not (posterior or return_std):
            return est["mean"]
        if "var" not in est:
            raise InputError(
                f"variant {self.config.variant!r} predicts no variance; posterior and "
                f"uncertainty need --variant probabilistic")
        if self.config.resolved_backbone == "blindspot":
            est["var"] = calibrate_variance(image, est["mean"], est["var"])
        noise_var = self.noise_variance(est["mean"],
                                        self._noise_for(image, noise_model, est["mean"]))
        if posterior and self.config.resolved_backbone != "blindspot":
            warnings.warn(
                "posterior mean with a masked U-Net backbone: the network saw each pixel at "
                "prediction time, so the observation is counted twice; train with "
                "--backbone blindspot for an exact posterior", UserWarning, stacklevel=2)
        if posterior and self._correlated_beyond_blind_spot(image):
            posterior = False
        if posterior:
            mean, std = posterior_mean(est["mean"], est["var"], image, noise_var)
        else:
            mean = est["mean"]
            std = np.sqrt(np.maximum(est["var"] - noise_var, 0)).astype(np.float32)
        return (mean, std) if return_std else mean

    def _correlated_beyond_blind_spot(self, image: np.ndarray) -> bool:
        """Warn and say True when the image's noise is correlated beyond the blind spot.

        The posterior assumes the observed pixel's noise is independent of everything the
        prior saw; correlated noise (e.g. FMD wide-field frames) breaks that and the
        posterior mean then falls below the prior mean (by 1-3 dB there).
        """
        from .correlation import suggest_blind_radius

        radius = self.config.resolved_blind_radius
        need, corr = suggest_blind_radius(as_slices([image]))
        if need <= radius:
            return False
        warnings.warn(
            f"the noise of this image looks spatially correlated (neighbour correlation "
            f"{corr[:, 0].max():.2f}) beyond the model's blind spot (radius {radius}); the "
            f"posterior would count it twice, so the prior mean is returned (train with "
            f"--blind-radius auto for such data)", UserWarning, stacklevel=3)
        return True

    def _noise_for(self, image: np.ndarray, choice: str | Mapping[str, Any],
                   prior_mean: np.ndarray) -> dict | None:
        if isinstance(choice, Mapping):
            return dict(choice)
        if choice == "stored":
            return self.noise
        if choice == "image":
            return estimate_noise_model(as_slices([image]), self.config.noise_model)
        if choice == "bootstrap":
            from .noise import bootstrap_noise_model

            return bootstrap_noise_model(image, prior_mean, self.config.noise_model.kind)
        raise InputError(f"noise_model must be one of {', '.join(NOISE_SOURCES)} or a "
                         f"mapping, got {choice!r}")

    def noise_variance(self, signal: np.ndarray, noise: Mapping[str, Any] | None = None
                       ) -> np.ndarray:
        """Per-pixel noise variance (image units) from ``noise`` or the stored noise model."""
        from .noise import noise_variance

        nm = dict(noise) if noise is not None else (self.noise or {})
        if nm.get("kind") == "poisson-gaussian":
            return noise_variance(signal, nm["a"], nm["b"]).astype(np.float32)
        return np.full(signal.shape, nm.get("sigma", 0.0) ** 2, np.float32)

    # -- persistence -------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder; refuses to replace an existing model unless ``overwrite``."""
        from .config import save_config
        from .io import atomic_path, atomic_write_text

        path = Path(path)
        if path.exists() and not path.is_dir():
            raise OutputExistsError(f"{path}: exists and is not a folder")
        if (path / META).exists() and not overwrite:
            raise OutputExistsError(f"{path}: already holds a model; use --overwrite to replace")
        path.mkdir(parents=True, exist_ok=True)
        if (path / META).exists():
            (path / META).unlink()  # the folder is incomplete until the new META lands
        with atomic_path(path / WEIGHTS, overwrite=True) as tmp:
            torch.save(self.network.state_dict(), tmp)
        save_config(self.config, path / CONFIG, overwrite=True)
        meta = {
            "format_version": FORMAT_VERSION, "package_version": __version__,
            "variant": self.config.variant, "normalizer": self.normalizer.model_dump(),
            "noise_model": self.noise, "history": self.history,
            "train_seconds": round(self.train_seconds, 3),
        }
        atomic_write_text(path / META, json.dumps(meta, indent=2), overwrite=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Model:
        """Load a model folder written by :meth:`save`, with one-line errors if it is broken."""
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: model folder not found")
        if not (path / META).is_file() and (path / "checkpoint.pt").is_file():
            from .checkpoint_export import interrupted_message

            raise ModelError(interrupted_message(path))
        for name in (META, CONFIG, WEIGHTS):
            if not (path / name).is_file():
                raise ModelError(f"{path}: not a complete model folder ({name} is missing)")
        try:
            meta = json.loads((path / META).read_text())
            raw = yaml.safe_load((path / CONFIG).read_text())
        except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: corrupt model metadata ({type(exc).__name__})") from None
        if not isinstance(meta, dict) or not isinstance(raw, dict):
            raise ModelError(f"{path}: corrupt model metadata (not a mapping)")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{path}: model format version {version!r} is not supported by n2v-cascade "
                f"{__version__} (expects {FORMAT_VERSION})")
        network_raw = raw.get("network")
        if isinstance(network_raw, dict) and "ring_residual" not in network_raw:
            network_raw["ring_residual"] = False  # saved before the option existed: none
        if isinstance(network_raw, dict) and "blind_radius" not in network_raw:
            network_raw["blind_radius"] = 0  # likewise: the pixel-only blind spot
        try:
            config = make_config(str(path / CONFIG), **raw)
            normalizer = Normalizer.model_validate(meta["normalizer"])
        except (InputError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: corrupt model config ({exc})") from None
        network = get_variant(config).build_network()
        try:
            state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - any failure means unusable weights
            raise ModelError(f"{path}: weights cannot be loaded ({type(exc).__name__})") from None
        network.eval()
        model = cls(network, config, normalizer, noise=meta.get("noise_model"),
                    history=meta.get("history"))
        model.train_seconds = float(meta.get("train_seconds", 0.0))
        return model


def _order(key: str) -> int:
    return {"mean": 0, "var": 1}.get(key, 2)


def _as_float_image(image: np.ndarray | str | Path) -> np.ndarray:
    from .io import read_image, validate_array

    if isinstance(image, str | Path):  # a file, read as the CLI reads it
        return read_image(image, allow_constant=True)
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy array or an image path, got {type(image).__name__}")
    return validate_array(image, "array", allow_constant=True)


def _pad_to_multiple(image: np.ndarray, div: int) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Reflect-pad the bottom/right to a multiple of ``div`` (so tiles need no inner padding)."""
    pads = [(0, (-s) % div) for s in image.shape]
    crop = tuple(slice(0, s) for s in image.shape)
    if not any(p for _, p in pads):
        return image, crop
    mode = "reflect" if all(p < s for (_, p), s in zip(pads, image.shape, strict=True)) else "edge"
    return np.pad(image, pads, mode=mode), crop


def _probe_radius(network: nn.Module, div: int, size: int | None = None) -> int:
    """Receptive-field radius: how far input pixels reach in the output (a safe bound).

    All weights are set to ``1 / fan_in`` and biases to zero, so no ReLU is ever off and
    no paths cancel: the output is non-zero exactly where the input can reach (a gradient
    at a real input misses pixels behind inactive ReLUs). The input is a ``div x div``
    block, because with strided layers the reach depends on the position modulo ``div``;
    the bound is exact up to ``div - 1``. The probe grows until the reach stays clear of
    its border (the first size fits every backbone here). ``network`` is overwritten: pass
    a throw-away copy.
    """
    size = 40 * div if size is None else size
    with torch.no_grad():
        for param in network.parameters():
            param.fill_(1.0 / param[0].numel() if param.ndim > 1 else 0.0)
        network.eval()
        while True:
            size = -(-size // (2 * div)) * 2 * div
            lo, hi = size // 2 - div, size // 2 - 1  # a whole period, aligned with the strides
            x = torch.zeros(1, 1, size, size)
            x[0, 0, lo: hi + 1, lo: hi + 1] = 1.0
            reach = torch.nonzero(network(x)[0].abs().sum(0) > 0)
            radius = int(torch.maximum(hi - reach, reach - lo).max()) if reach.numel() else 0
            if radius < lo or size >= 8192:
                return radius
            size *= 2


def estimate_noise_model(slices: Sequence[np.ndarray], cfg: NoiseModelConfig,
                         names: Sequence[str] | None = None) -> dict:
    """The noise model in image units: given values, or estimated from the noisy data.

    ``names`` (one per slice) name the file in the error when a slice cannot be used.
    """
    from .noise import estimate_gaussian_sigma, estimate_poisson_gaussian

    def each(fn) -> list:
        out = []
        for i, s in enumerate(slices):
            try:
                out.append(fn(s))
            except InputError as exc:
                name = names[i] if names is not None else f"image {i}"
                raise InputError(f"{name}: {exc}") from None
        return out

    if cfg.kind == "poisson-gaussian":
        a, b = cfg.a, cfg.b
        if a is None or b is None:
            fits = np.array(each(estimate_poisson_gaussian))
            a = float(np.median(fits[:, 0])) if a is None else a
            b = float(np.median(fits[:, 1])) if b is None else b
        return {"kind": "poisson-gaussian", "a": float(a), "b": float(b)}
    sigma = cfg.sigma
    if sigma is None:
        sigma = float(np.median(each(estimate_gaussian_sigma)))
    return {"kind": "gaussian", "sigma": float(sigma)}


def load_images_arg(images: object) -> list[tuple[str, np.ndarray]]:
    """Accept an array, a list of arrays, or path(s); return (name, float32 array) pairs."""
    from .io import read_images, validate_array

    if isinstance(images, np.ndarray):
        return [("array", validate_array(images, "array"))]
    if isinstance(images, (str, Path)):
        return [(str(p), a) for p, a in read_images(images)]
    if isinstance(images, Sequence) and images and all(
            isinstance(i, np.ndarray) for i in images):
        return [(f"array[{i}]", validate_array(a, f"array[{i}]")) for i, a in enumerate(images)]
    if isinstance(images, Sequence) and images and all(isinstance(i, (str, Path)) for i in images):
        return [(str(p), a) for p, a in read_images(list(images))]
    raise InputError("images must be an array, a list of arrays, or file/folder paths")
