"""What training makes of its inputs: the network's dims, every sample of every image,
the channels, the patch shape, the method's settings from the data, validation batches.

:func:`in_memory_data` is the path for images read whole; :mod:`n2v_cascade.lazy_data`
gives the same :class:`TrainingData` for images read block by block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .axes import choose_dims, layout, planes, to_samples
from .config import TrainConfig, update_config
from .data import PatchSampler, split_train_val
from .errors import InputError
from .inputs import Input
from .methods import get_method
from .normalize import Normalizer
from .progress import note


@dataclass
class TrainingData:
    """What the training loop needs from its inputs, however they are read.

    ``raw`` (with ``names``) are the unnormalised samples the normaliser, the method's
    settings and the noise model were taken from (all samples in memory, a first sample
    of blocks when lazy); ``sampler`` draws the batches (``.sample``, ``.n_pixels``,
    ``.channels``, ``.seek``); ``val`` are the normalised validation patches; ``shown``
    has the shape of every sample of every image, for the settings line.
    """

    config: TrainConfig
    raw: list[np.ndarray]
    names: list[str]
    normalizer: Normalizer
    patch: tuple[int, ...]
    sampler: Any
    val: list[np.ndarray]
    shown: Sequence[np.ndarray]


def in_memory_data(config: TrainConfig, inputs: Sequence[Input], progress: bool
                   ) -> TrainingData:
    """Images read whole: every sample in memory, the bottom strips held out."""
    config = resolve_dims(config, [(i.data.shape, i.axes) for i in inputs])
    raw, names = training_samples(inputs, config)
    config = joint_channels(config, raw, names)
    config = settings_for_data(config, raw, names, progress)
    normalizer = Normalizer.fit(raw)
    divisor = 2 ** config.network.depth
    patch = training_patch(config, raw)
    split = split_train_val([normalizer.apply(s) for s in raw], patch,
                            config.val_fraction, names, divisor=divisor)
    sampler = PatchSampler(split.train, patch, augment=config.augment)
    return TrainingData(config, raw, names, normalizer, patch, sampler, split.val, raw)


def noisy_samples(data: TrainingData, noisy: Sequence[Input]) -> list[np.ndarray]:
    """The normalised samples of ``noisy`` (the images before an earlier denoiser), one
    per training sample and of its shape, for a method that reads both."""
    raw, names = training_samples(noisy, data.config)
    if len(raw) != len(data.raw):
        raise InputError(f"noisy images: {len(raw)} sample(s) for {len(data.raw)} training "
                         f"sample(s); give one noisy image per training image")
    for sample, given, name in zip(data.raw, raw, names, strict=True):
        if sample.shape != given.shape:
            raise InputError(f"{name}: noisy image of shape {given.shape} beside a training "
                             f"sample of shape {sample.shape}; they must match")
    return [data.normalizer.apply(s) for s in raw]


def resolve_dims(config: TrainConfig, images: Sequence[tuple[tuple[int, ...], str | None]]
                 ) -> TrainConfig:
    """Replace ``dims: auto`` by 2 or 3 (3 when every image has enough Z slices);
    ``images`` holds each image's shape and axes."""
    if config.dims != "auto":
        return config
    dims = min(choose_dims("auto", shape, axes) for shape, axes in images)
    return update_config(config, "training images", dims=dims)


def training_samples(inputs: Sequence[Input], config: TrainConfig
             ) -> tuple[list[np.ndarray], list[str]]:
    """Every training sample of every image (each with its own axes), and its name."""
    raw: list[np.ndarray] = []
    names: list[str] = []
    for item in inputs:
        lay = layout(item.data.shape, item.axes, config.dims, source=item.name,
                     joint=config.channels == "joint")
        samples = to_samples(item.data, lay)
        raw.extend(samples)
        names.extend([item.name] * len(samples))
    return raw, names


def joint_channels(config: TrainConfig, raw: Sequence[np.ndarray], names: list[str]
                    ) -> TrainConfig:
    """With ``channels: joint``, the network's channel count is the data's C (every image
    needs the same C)."""
    if config.channels != "joint":
        return config
    spatial = config.dims if isinstance(config.dims, int) else 2
    counts = {name: (s.shape[0] if s.ndim > spatial else 1) for s, name in zip(raw, names,
                                                                          strict=True)}
    if len(set(counts.values())) > 1:
        shown = ", ".join(f"{n}: {c}" for n, c in counts.items())
        raise InputError(f"--channels joint: the images have different channel counts "
                         f"({shown}); train each kind separately")
    return update_config(config, "training images", n_channels=next(iter(counts.values())))


def training_patch(config: TrainConfig, samples: Sequence[np.ndarray]) -> tuple[int, ...]:
    """The spatial patch shape: ``patch_size`` squared in YX, and for 3-D ``patch_z``
    along the depth axis, shrunk to the shallowest stack (the networks pad internally)."""
    p = config.patch_size
    if config.dims != 3:
        return (p, p)
    return (min(config.patch_z, *(int(s.shape[-3]) for s in samples)), p, p)


def settings_for_data(config: TrainConfig, raw: Sequence[np.ndarray], names: list[str],
                       progress: bool) -> TrainConfig:
    """Apply what the method chooses from the training images (e.g. the blind radius);
    the noise checks look at the YX planes."""
    per_plane = [(plane, name) for s, name in zip(raw, names, strict=True)
                 for plane in planes([s])]
    changes, text = get_method(config).settings_for_data(
        [p for p, _ in per_plane], [n for _, n in per_plane])
    if text and progress:
        note(text)
    return update_config(config, "training images", **changes) if changes else config


def validation_patches(val: Sequence[np.ndarray], channels: int = 1) -> list[torch.Tensor]:
    """Fixed validation batches ``(B, C, *spatial)`` of at most 16 patches of one shape;
    ``channels`` > 1: the patches have their channel axis already."""
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for patch in val:
        by_shape.setdefault(patch.shape, []).append(patch)
    batches = []
    for group in by_shape.values():
        for i in range(0, len(group), 16):
            stacked = np.stack(group[i: i + 16])
            batches.append(torch.from_numpy((stacked if channels > 1 else stacked[:, None]).copy()))
    return batches
