"""Intensity normalisation fitted on the training data and stored with the model.

Networks train on ``(x - mean) / std``; predictions are mapped back with :meth:`undo`
(values), :meth:`undo_scale` (standard deviations) and :meth:`undo_variance` (variances),
so a saved model denoises new images in their original units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pydantic
import torch

from n2v_cascade.errors import InputError

__all__ = ["Normalizer"]

T = TypeVar("T", np.ndarray, torch.Tensor, float)


_CHUNK = 1 << 22  # elements per float64 chunk of a large array (32 MB)


def _elementwise(x: T, fn: Callable[[Any], Any]) -> T:
    """Apply ``fn`` to a float, a NumPy array (-> float32) or a torch tensor.

    Tensors keep their floating dtype, device and autograd graph (integer tensors become
    float32); arrays are computed in float64 and returned as float32.
    """
    if isinstance(x, torch.Tensor):
        return fn(x if torch.is_floating_point(x) else x.to(torch.float32))
    if isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool):
        return float(fn(float(x)))
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"expected a numeric array or tensor, got dtype {arr.dtype}")
    if arr.size <= _CHUNK:
        return np.asarray(fn(arr.astype(np.float64))).astype(np.float32)
    # Large images: the same float64 arithmetic per element, a chunk at a time, so an
    # 8192x8192 image does not need two full float64 copies (1 GB) next to it.
    out = np.empty(arr.shape, np.float32)
    flat_in, flat_out = arr.reshape(-1), out.reshape(-1)
    for start in range(0, arr.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        flat_out[part] = fn(flat_in[part].astype(np.float64))
    return out


class Normalizer(pydantic.BaseModel):
    """Mean/std normalisation; serialise with ``model_dump()`` / ``model_validate()``.

    Attributes
    ----------
    mean : float
        Pooled mean intensity of the training images.
    std : float
        Pooled (population) standard deviation, > 0.
    """

    model_config = pydantic.ConfigDict(frozen=True)

    mean: float = pydantic.Field(allow_inf_nan=False)
    std: float = pydantic.Field(gt=0.0, allow_inf_nan=False)

    @classmethod
    def fit(cls, images: Sequence[np.ndarray]) -> Normalizer:
        """Fit on all pixels of all ``images`` pooled (images may differ in size).

        Two passes with float64 accumulation keep the statistics exact for large uint16
        stacks. The std is floored at ``1e-8 * max(1, |mean|)`` so near-constant data
        cannot blow up the normalised values.

        Raises
        ------
        InputError
            If there are no images, an image is empty, non-numeric or not finite, or all
            pixels of all images have the same value.
        """
        if isinstance(images, np.ndarray | torch.Tensor):
            images = [images]
        arrays = []
        for i, image in enumerate(images):
            arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
            arr = np.asarray(arr)
            if arr.dtype.kind not in "biuf" or arr.size == 0:
                raise InputError(
                    f"images[{i}] must be a non-empty numeric array, "
                    f"got dtype {arr.dtype} and shape {arr.shape}"
                )
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InputError(f"images[{i}] contains NaN or infinite values")
            arrays.append(arr)
        if not arrays:
            raise InputError("cannot fit a normalizer on an empty list of images")

        count = sum(a.size for a in arrays)
        mean = sum(float(np.sum(a, dtype=np.float64)) for a in arrays) / count
        lo = min(float(a.min()) for a in arrays)
        hi = max(float(a.max()) for a in arrays)
        if lo == hi:
            raise InputError(
                f"all training images are constant (every pixel is {lo}); cannot normalise"
            )
        sq = sum(float(np.sum((a.astype(np.float64) - mean) ** 2)) for a in arrays)
        std = max(math.sqrt(sq / count), 1e-8 * max(1.0, abs(mean)))
        return cls(mean=mean, std=std)

    def apply(self, x: T) -> T:
        """Normalise: ``(x - mean) / std``."""
        return _elementwise(x, lambda v: (v - self.mean) / self.std)

    def undo(self, x: T) -> T:
        """Back to image units: ``x * std + mean``."""
        return _elementwise(x, lambda v: v * self.std + self.mean)

    def undo_variance(self, v: T) -> T:
        """A variance back to image units: ``v * std**2``."""
        return _elementwise(v, lambda w: w * self.std**2)
