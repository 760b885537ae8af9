"""structN2V kernels: the neighbourhood hidden around each masked pixel.

A kernel is a boolean array with odd sides centred on the masked pixel: a line along X,
Y or Z (noise correlated along a scan direction), a YX square (correlated with all close
neighbours), or one a user draws. This module builds and checks kernels and dilates a
mask by one; :mod:`n2v_cascade.masking` randomises the pixels they cover.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["LINE_SHAPES", "dilate", "grid_hides_everything", "line_kernel", "validate_kernel"]


def line_kernel(spec: str) -> np.ndarray:
    """structN2V neighbourhood from ``"horizontal:N"``, ``"vertical:N"``, ``"depth:N"``
    or ``"box:N"``.

    Returns a boolean kernel of ``N`` True pixels in a row (``1 x N``), a column
    (``N x 1``), along Z (``N x 1 x 1``, 3-D data only) or an ``N x N`` YX square (noise
    correlated with all close neighbours, as from a camera's read-out or resampling);
    ``N`` must be odd and >= 3 so the kernel is centred on the masked pixel.
    """
    text = spec.strip().lower() if isinstance(spec, str) else ""
    direction, _, span_text = text.partition(":")
    if direction not in LINE_SHAPES or not span_text.strip().isdigit():
        raise InputError(f"struct must look like 'horizontal:5', 'vertical:5', 'depth:5' or "
                         f"'box:3', got {spec!r}")
    span = int(span_text)
    if span < 3 or span % 2 == 0:
        raise InputError(f"struct span must be an odd number >= 3, got {span} in {spec!r}")
    return np.ones(LINE_SHAPES[direction](span), dtype=bool)


#: structN2V kernel shapes: lines along X, along Y (2-D kernels) and along Z (3-D only),
#: and a YX square.
LINE_SHAPES = {"horizontal": lambda n: (1, n), "vertical": lambda n: (n, 1),
               "depth": lambda n: (n, 1, 1), "box": lambda n: (n, n)}


def validate_kernel(kernel: np.ndarray, source: str, *, ndim: int | None = None) -> np.ndarray:
    """Check a user-given structN2V kernel and return it as a boolean array.

    The kernel must be 2-D or 3-D (3-D only for 3-D data, when ``ndim`` is given) with
    odd sides, holding booleans or 0/1 values. The centre is forced True so the masked
    pixel itself is always hidden. Errors name ``source`` (e.g. the file or option).
    """
    try:
        array = np.asarray(kernel)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise InputError(f"{source}: kernel is not a rectangular array ({exc})") from None
    if array.ndim not in (2, 3):
        raise InputError(f"{source}: kernel must be 2-D or 3-D, got {array.ndim}-D")
    if ndim is not None and array.ndim > ndim:
        raise InputError(f"{source}: a {array.ndim}-D kernel needs {array.ndim}-D data")
    if any(side % 2 == 0 for side in array.shape):
        raise InputError(f"{source}: kernel sides must be odd, got shape {array.shape}")
    if array.dtype != bool:
        if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
            raise InputError(f"{source}: kernel must hold booleans or 0/1 values")
        array = array.astype(bool)
    array = array.copy()
    array[tuple(side // 2 for side in array.shape)] = True
    return array


def grid_hides_everything(stride: int, kernel: np.ndarray, ndim: int) -> bool:
    """True when ``kernel`` around every pixel of a :func:`grid_mask` lattice of ``stride``
    covers the whole ``ndim``-D input (the network would see only random values).

    The lattice repeats every ``stride`` pixels, so it is enough that the kernel's
    offsets reach every residue modulo ``stride`` along every axis.
    """
    kernel = np.asarray(kernel, bool)
    kernel = kernel.reshape((1,) * (ndim - kernel.ndim) + kernel.shape)
    offsets = np.argwhere(kernel) - np.array(kernel.shape) // 2
    return len({tuple(o) for o in (offsets % stride)}) == stride ** ndim


def dilate(mask: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Pixels covered by ``kernel`` centred on any True pixel of ``mask`` (B, 1, *spatial)."""
    ndim = mask.ndim - 2
    if ndim > 3:
        raise InputError(f"structN2V supports 2-D and 3-D data, got {ndim} spatial axes")
    kernel = kernel.reshape((1,) * (ndim - kernel.ndim) + kernel.shape)
    # Convolution layers cross-correlate; flipping turns that into a true dilation so
    # asymmetric kernels extend to the side they are drawn on.
    weight = torch.as_tensor(np.flip(kernel).copy(), dtype=torch.float32, device=mask.device)
    conv = (F.conv1d, F.conv2d, F.conv3d)[ndim - 1]
    padding = [side // 2 for side in kernel.shape]
    return conv(mask.to(torch.float32), weight[None, None], padding=padding) > 0.5
