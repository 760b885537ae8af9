"""A trained denoiser and its self-describing folder on disk.

The folder holds ``weights.pt`` (state dict), ``config.yaml`` (the full training
recipe) and ``model.json`` (normalisation statistics, estimated noise model, package
and format version, training history). ``model.json`` is written last, so a folder
without it is an incomplete save and is refused on load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from . import __version__
from .axes import Layout, from_samples, layout, to_samples
from .blend import blend_setting, blend_weight, blended
from .config import TrainConfig, config_yaml, make_config
from .errors import InputError, ModelError, OutputExistsError
from .methods import get_method
from .methods.base import Method
from .normalize import Normalizer
from .posterior import combine, noise_for, residual_noise
from .predict import pad_image, predict_tiled, probe_radius
from .runtime import Runner, host_state, load, place, resolve_device

FORMAT_VERSION = 1
WEIGHTS, CONFIG, META = "weights.pt", "config.yaml", "model.json"
CHECKPOINT = "checkpoint.pt"  # what training leaves in the folder until it finishes


def interrupted_message(path: Path) -> str:
    """The one-line explanation for a folder holding a checkpoint but no model."""
    return (f"{path}: training was interrupted ({CHECKPOINT} but no model.json); finish it "
            f"with 'n2v-cascade train IMAGES -o {path} --resume' (same images and options), "
            f"or save the checkpoint's weights as the model with 'n2v-cascade finish {path} "
            f"IMAGES'")


class Model:
    """A trained network with everything needed to use it on new images."""

    def __init__(
        self, network: nn.Module, config: TrainConfig, normalizer: Normalizer,
        noise: dict | None = None, history: list | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config
        self.normalizer = normalizer
        self.noise = noise
        self.history = history or []
        self.train_seconds = 0.0
        self._radius: int | None = None
        self.device = resolve_device(device)
        self.network = place(network, self.device)

    @property
    def method(self) -> Method:
        """The method (plug-in) this model was trained with."""
        return get_method(self.config)

    def to(self, device: str | torch.device | None) -> Model:
        """Move the model to another device (``auto``/None: the best available)."""
        self.device = resolve_device(device)
        self.network = place(self.network, self.device)
        return self

    # -- prediction --------------------------------------------------------------
    def layout(self, shape: tuple[int, ...], axes: str | None = None, source: str = "array"
               ) -> Layout:
        """How an image of ``shape`` (with ``axes``) maps to this model's samples."""
        return layout(shape, axes, self.config.dims, source=source,
                      joint=self.config.channels == "joint")

    def receptive_radius(self) -> int:
        """How far (pixels) the network looks; tiles overlap by this much."""
        if self._radius is None:
            # Probed on a one-channel-wide 2-D twin with one image channel: same kernels
            # and strides, tiny activations. A 3-D network reaches as far along every
            # axis as its 2-D twin does along Y and X (every layer has the same kernel
            # and stride on each axis; test_models_3d checks it), and a 3-D probe would
            # need a 320^3 volume.
            narrow = self.config.network.model_copy(update={"width": 1})
            with torch.random.fork_rng(devices=[]):  # its initial weights are not used
                twin = get_method(self.config.model_copy(update={
                    "network": narrow, "dims": 2, "n_channels": 1, "channels": "independent"}))
                net = twin.build_network()
            self._radius = probe_radius(net, 2 ** self.config.network.depth)
        return self._radius

    def predict(
        self, image: np.ndarray | str | Path, *, axes: str | None = None,
        tile: int | None = 512, overlap: int | None = None, batch_size: int = 4,
        tta: bool = False, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Raw estimates in image units: ``mean``, and ``var`` (of the noisy value) if predicted.

        ``image`` is an array with ``axes`` (default YX, or SYX for a stack) or a file;
        outputs have the image's shape.
        """
        image, axes = _as_float_image(image, axes, self.config.dims)
        lay = self.layout(image.shape, axes)
        est = self._predict_samples(to_samples(image, lay), tile=tile, overlap=overlap,
                                    batch_size=batch_size, tta=tta, progress=progress)
        return {k: from_samples(v, lay) for k, v in est.items()}

    def _predict_samples(
        self, samples: np.ndarray, *, tile: int | None = 512, overlap: int | None = None,
        batch_size: int = 4, tta: bool = False, progress: bool = False,
    ) -> dict[str, np.ndarray]:
        """Estimates of ``(N, *spatial)`` samples, sample by sample, tiled."""
        parts = [self._predict_one(s, tile=tile, overlap=overlap, batch_size=batch_size,
                                   tta=tta, progress=progress) for s in samples]
        return {k: np.stack([p[k] for p in parts]) for k in parts[0]}

    def _predict_one(self, image: np.ndarray, *, tile: int | None, overlap: int | None,
                     batch_size: int, tta: bool, progress: bool) -> dict[str, np.ndarray]:
        div, channels = 2 ** self.config.network.depth, self.config.n_channels
        overlap = self.receptive_radius() if overlap is None else overlap
        padded, crop = pad_image(self.normalizer.apply(image), div, self.config.dims)
        if tile is not None:
            overlap = -(-overlap // div) * div
            spatial = padded.shape[padded.ndim - self.config.dims:]
            tile = tile_shape(tile, self.config.dims, overlap, div, spatial,
                              getattr(self.network, "tile_cost", 1))
        self.network.eval()
        method, run = self.method, Runner(self.network, self.device)

        def fn(batch: torch.Tensor) -> torch.Tensor:
            out = method.estimate(run(batch))
            return torch.cat([out[k] for k in sorted(out, key=_order)], dim=1)

        out = predict_tiled(fn, padded, tile=tile, overlap=overlap, batch_size=batch_size,
                            tta=tta, progress=progress, divisor=div,
                            channels=channels)[(slice(None), *crop)]
        del padded  # a full-size copy; free it before the outputs are converted back
        # the outputs' channel blocks: means, then variances; one sample keeps its
        # channel axis only when it has more than one channel
        block = (lambda k: out[k * channels:(k + 1) * channels]) if channels > 1 else (
            lambda k: out[k])
        result = {"mean": self.normalizer.undo(block(0)).astype(np.float32, copy=False)}
        if out.shape[0] > channels:
            result["var"] = self.normalizer.undo_variance(block(1)).astype(np.float32,
                                                                          copy=False)
        return result

    def denoise(
        self, image: np.ndarray | str | Path, *, axes: str | None = None,
        posterior: bool | str = "auto", return_std: bool = False,
        noise_model: str | Mapping[str, Any] = "bootstrap", info: list | None = None,
        blend: str | float = "auto", **kwargs,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Denoise an image (array with ``axes``, or a file): image units in and out.

        ``posterior`` (models that predict a variance) combines the predicted prior with
        a noise model and the observed pixel to return the posterior mean: ``True``,
        ``False`` (the prior mean), or ``"auto"`` (default: per image, whichever a
        ground-truth-free estimate says is better; only blind-spot models, whose
        posterior is exact, ever use it). ``noise_model`` is ``"bootstrap"`` (default:
        fitted to this image's residual from the prior mean, as PN2V does; errs towards
        too much noise, the safe side), ``"image"`` (estimated on this image alone),
        ``"stored"`` (estimated on the training data), or a mapping like the stored one.
        ``return_std`` also returns the per-pixel standard deviation of the estimate.
        ``info``, a list, receives one dict per sample (2-D image) saying whether the
        posterior was used, with the estimates behind an ``auto`` choice, and the blend
        weight.

        ``blend`` applies to methods that learn each pixel without its own value (masked
        and blind-spot methods) and predict no variance (those have the posterior): ``"auto"``
        (default) returns the share of the observed value that minimises the expected
        error, estimated per image from its residual (:mod:`n2v_cascade.blend`),
        ``"none"`` the prior mean itself, a number in [0, 1] that share.
        """
        image, axes = _as_float_image(image, axes, self.config.dims)
        lay = self.layout(image.shape, axes)
        samples = to_samples(image, lay)
        est = self._predict_samples(samples, **kwargs)
        method = self.method
        if posterior == "auto" and not (method.predicts_variance and method.blind
                                        and self.config.n_channels == 1):
            posterior = False  # no exact posterior to choose
        if (posterior or return_std) and self.config.n_channels > 1:
            raise InputError("posterior and uncertainty need one channel per sample; train "
                             "with --channels independent")
        if not (posterior or return_std):
            return from_samples(self._blended(samples, est["mean"], blend, info), lay)
        if not method.predicts_variance:
            raise InputError(
                f"method {self.config.variant!r} predicts no variance; posterior and "
                f"uncertainty need --variant probabilistic")
        blind_radius = self.config.network.blind_radius
        radius = blind_radius if isinstance(blind_radius, int) else 0
        # one image at a time: the noise model, the calibration and the choice are per image
        parts = []
        for i in range(len(samples)):
            one = {k: v[i:i + 1] for k, v in est.items()}
            noise = noise_for(samples[i:i + 1], noise_model, self.noise,
                              self.config.noise_model, one["mean"])
            # the choice is checked against the noise read from this image's residual
            # (image-detail estimates read clipped, quantised microscope noise low)
            check = (residual_noise(samples[i:i + 1], one["mean"]) or noise_for(
                samples[i:i + 1], "image", None, self.config.noise_model, one["mean"])
                if posterior == "auto" else None)
            record: dict = {}
            parts.append(combine(samples[i:i + 1], one, blind=method.blind, posterior=posterior,
                                 blind_radius=radius, noise=noise, check_noise=check,
                                 info=record))
            if info is not None:
                info.append(record)
        mean = from_samples(np.concatenate([m for m, _ in parts]), lay)
        std = from_samples(np.concatenate([s for _, s in parts]), lay)
        return (mean, std) if return_std else mean

    def _blended(self, samples: np.ndarray, means: np.ndarray, blend: str | float,
                 info: list | None) -> np.ndarray:
        """The prior means with ``blend`` of the observed values returned, per sample."""
        fixed = blend_setting(blend)
        radius = self.config.network.blind_radius
        # noise correlated between neighbours (the model hides more than the pixel: a
        # structN2V kernel or a blind radius) breaks the estimate of the share; joint
        # channels share one network output per pixel
        correlated = self.method.kernel is not None or (isinstance(radius, int) and radius > 0)
        # methods that predict a variance combine with the pixel through their posterior
        applies = (self.method.hides_pixel and not self.method.predicts_variance
                   and self.config.n_channels == 1)
        if fixed and not applies:
            raise InputError(
                f"blend: a share of the measured pixel applies to masked and blind-spot "
                f"methods with one channel and no posterior, not to {self.config.variant!r}"
                f"{' with joint channels' if self.config.n_channels > 1 else ''}")
        if fixed == 0.0 or not applies or (fixed is None and correlated):
            weights = [0.0] * len(samples)
        else:
            weights = [blend_weight(s, m) if fixed is None else fixed
                       for s, m in zip(samples, means, strict=True)]
        if info is not None:
            info.extend({"posterior": False, "blend": w} for w in weights)
        return np.stack([blended(s, m, w) if w else m
                         for s, m, w in zip(samples, means, weights, strict=True)])

    # -- persistence -------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder; refuses to replace an existing model unless ``overwrite``."""
        from .safe_write import atomic_path, atomic_write_text, check_output_folder

        path = Path(path)
        check_output_folder(path, busy=(path / META).exists() and not overwrite,
                            hint="already holds a model; use --overwrite to replace",
                            error=OutputExistsError)
        path.mkdir(parents=True, exist_ok=True)
        if (path / META).exists():
            (path / META).unlink()  # the folder is incomplete until the new META lands
        with atomic_path(path / WEIGHTS, overwrite=True) as tmp:
            torch.save(host_state(self.network), tmp)
        atomic_write_text(path / CONFIG, config_yaml(self.config), overwrite=True)
        meta = {
            "format_version": FORMAT_VERSION, "package_version": __version__,
            "variant": self.config.variant, "normalizer": self.normalizer.model_dump(),
            "noise_model": self.noise, "history": self.history,
            "train_seconds": round(self.train_seconds, 3),
        }
        atomic_write_text(path / META, json.dumps(meta, indent=2), overwrite=True)
        return path

    def export_bioimageio(self, path: str | Path, **options: Any) -> Path:
        """Write a validated BioImage Model Zoo package (:func:`.bmz.export_bioimageio`)."""
        from .bmz import export_bioimageio

        return export_bioimageio(self, path, **options)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Model:
        """Load a model folder written by :meth:`save` (or a ``.zip`` written by
        :meth:`export_bioimageio`) onto ``device`` (None: the best available), with
        one-line errors if it is broken."""
        if str(path).lower().endswith(".zip") and not Path(path).is_dir():
            from .bmz_load import load_package

            return load_package(path, device)
        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: model folder not found")
        if not (path / META).is_file() and (path / "checkpoint.pt").is_file():
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
        if isinstance(network_raw, dict):
            # saved before these options existed: the pixel-only blind spot, no ring mean
            network_raw.setdefault("ring_residual", False)
            network_raw.setdefault("blind_radius", 0)
        try:
            config = make_config(str(path / CONFIG), **raw)
            normalizer = Normalizer.model_validate(meta["normalizer"])
        except (InputError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: corrupt model config ({exc})") from None
        network = get_method(config).build_network()
        try:
            network.load_state_dict(load(path / WEIGHTS))
        except Exception as exc:  # noqa: BLE001 - any failure means unusable weights
            raise ModelError(f"{path}: weights cannot be loaded ({type(exc).__name__})") from None
        network.eval()
        model = cls(network, config, normalizer, noise=meta.get("noise_model"),
                    history=meta.get("history"), device=device)
        model.train_seconds = float(meta.get("train_seconds", 0.0))
        return model


#: Most voxels of a default 3-D tile (an int ``tile``), in U-Net voxels, so that a 3-D
#: prediction's activations stay near a gigabyte (the measured bytes per voxel are in
#: docs/DECISIONS.md); a network that runs several views divides it by their number
#: (``tile_cost``). The 4x-overlap floor of :func:`tile_shape` wins when it needs more.
TILE_VOXELS_3D = 2**21


def tile_shape(tile: int | tuple[int, ...], dims: int, overlap: int, div: int,
               extent: Sequence[int] | None = None, cost: int = 1) -> tuple[int, ...]:
    """The tile shape used for a requested ``tile``: a multiple of ``div``, and at least
    4x the overlap, so that tiles are exact and at least half of each tile side is kept
    (a tile barely above 2x the overlap would be exact but mostly wasted work; in 3-D the
    waste is cubed).

    An int ``tile`` is the side on every axis; in 3-D the tile is clamped to the image's
    ``extent`` (the padded spatial shape) and its longest sides shrink towards the floor
    until it holds at most :data:`TILE_VOXELS_3D` / ``cost`` voxels, so the memory of a
    3-D prediction is bounded whatever the stack's size. Tiles larger than the image are
    clamped to it when cut.
    """
    floor = max(4 * overlap, div)
    if not isinstance(tile, int):
        sizes = tuple(int(t) for t in tile)
        if len(sizes) != dims:
            raise InputError(f"tile: expected {dims} sizes for a {dims}-D model, got {tile!r}")
        return tuple(max(-(-t // div) * div, floor) for t in sizes)
    sizes = [max(-(-tile // div) * div, floor)] * dims
    if dims == 3:
        if extent is not None:
            sizes = [min(s, -(-int(e) // div) * div) for s, e in zip(sizes, extent, strict=True)]
        budget = TILE_VOXELS_3D // max(1, cost)
        while math.prod(sizes) > budget:
            axis = max(range(dims), key=lambda a: sizes[a])
            if sizes[axis] <= floor:
                break
            sizes[axis] = max(floor, sizes[axis] - div)
    return tuple(sizes)


def _order(key: str) -> int:
    return {"mean": 0, "var": 1}.get(key, 2)


def _as_float_image(image: np.ndarray | str | Path, axes: str | None = None,
                    dims: int | str = 2) -> tuple[np.ndarray, str | None]:
    """A checked float32 image from an array or an image file, and its axes (a file's
    own unless ``axes`` is given; all axes kept when they are named or more than three)."""
    from .inputs import load_inputs, read_input

    if isinstance(image, str | Path):
        item = read_input(image, axes, dims, allow_constant=True)
        return item.data, item.axes
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected a numpy array or an image path, got {type(image).__name__}")
    return load_inputs(image, axes, dims, allow_constant=True)[0].data, axes
