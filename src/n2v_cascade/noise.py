"""Synthetic noise for benchmarks and noise-level estimation for the probabilistic variant.

Synthetic noise is described by a :class:`NoiseSpec` (``"gaussian:25"``, ``"poisson:30"``,
``"poisson-gaussian:30,5"``) and applied with :func:`add_noise`. The estimators measure the
noise of a real noisy image *without* a clean reference, so that the probabilistic variant
can use a fixed noise model ``variance = a * signal + b`` in its posterior instead of letting
the network learn the noise level.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import pydantic

from n2v_cascade.errors import InputError

if TYPE_CHECKING:
    import torch

    from n2v_cascade.config import NoiseModelConfig

# torch, scipy, PyWavelets and scikit-image are imported where they are used, so that
# parsing a noise spec (the CLI's option check) stays fast.

__all__ = [
    "MIN_VARIANCE",
    "NoiseSpec",
    "add_noise",
    "bootstrap_noise_model",
    "estimate_gaussian_sigma",
    "estimate_poisson_gaussian",
    "noise_variance",
    "parse_noise_spec",
]

#: Smallest variance :func:`noise_variance` returns, so posteriors never divide by zero.
MIN_VARIANCE = 1e-10

_FORMAT_HELP = "expected 'gaussian:SIGMA', 'poisson:PEAK' or 'poisson-gaussian:PEAK,SIGMA'"
_MAD_TO_STD = 0.6744897501960817  # 75th percentile of the standard normal distribution

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _fmt_number(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (``25.0`` -> ``"25"``)."""
    return str(int(value)) if value.is_integer() else repr(value)


class NoiseSpec(pydantic.BaseModel):
    """A synthetic noise model.

    Attributes
    ----------
    kind : {"gaussian", "poisson", "poisson-gaussian"}
    sigma : float
        Gaussian standard deviation in the image's own intensity units (e.g. 25 for 0-255
        data). Required (> 0) for ``gaussian`` and ``poisson-gaussian``, 0 for ``poisson``.
    peak : float
        Poisson: the image's maximum is mapped to ``peak`` expected photons, so smaller
        values mean stronger noise. Required (> 0) for the Poisson kinds, 0 for ``gaussian``.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    kind: Literal["gaussian", "poisson", "poisson-gaussian"]
    sigma: float = pydantic.Field(default=0.0, ge=0.0, allow_inf_nan=False)
    peak: float = pydantic.Field(default=0.0, ge=0.0, allow_inf_nan=False)

    @pydantic.model_validator(mode="after")
    def _check_parameters(self) -> NoiseSpec:
        wants_sigma = self.kind in ("gaussian", "poisson-gaussian")
        wants_peak = self.kind in ("poisson", "poisson-gaussian")
        if wants_sigma != (self.sigma > 0):
            raise ValueError(f"{self.kind} noise needs sigma {'> 0' if wants_sigma else '= 0'}")
        if wants_peak != (self.peak > 0):
            raise ValueError(f"{self.kind} noise needs peak {'> 0' if wants_peak else '= 0'}")
        return self

    def __str__(self) -> str:
        if self.kind == "gaussian":
            return f"gaussian:{_fmt_number(self.sigma)}"
        if self.kind == "poisson":
            return f"poisson:{_fmt_number(self.peak)}"
        return f"poisson-gaussian:{_fmt_number(self.peak)},{_fmt_number(self.sigma)}"


def parse_noise_spec(text: str) -> NoiseSpec:
    """Parse ``"gaussian:25"``, ``"poisson:30"`` or ``"poisson-gaussian:30,5"`` (PEAK,SIGMA).

    Raises
    ------
    InputError
        On an unknown kind, a wrong number of values, or values that are not positive
        finite numbers; the message repeats the expected format.
    """
    bad = InputError(f"invalid noise spec {text!r}: {_FORMAT_HELP} with positive numbers")
    if not isinstance(text, str) or ":" not in text:
        raise bad
    kind, _, values = text.partition(":")
    kind = kind.strip().lower()
    try:
        numbers = [float(v) for v in values.split(",")]
    except ValueError:
        raise bad from None
    expected = {"gaussian": 1, "poisson": 1, "poisson-gaussian": 2}
    if expected.get(kind) != len(numbers) or not all(math.isfinite(v) and v > 0 for v in numbers):
        raise bad
    if kind == "gaussian":
        return NoiseSpec(kind="gaussian", sigma=numbers[0])
    if kind == "poisson":
        return NoiseSpec(kind="poisson", peak=numbers[0])
    return NoiseSpec(kind="poisson-gaussian", peak=numbers[0], sigma=numbers[1])


def _as_real_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Float64 view/copy of a finite, non-empty real array (never modifies the input)."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    return arr


def add_noise(image: np.ndarray, spec: NoiseSpec, seed: int = 0) -> np.ndarray:
    """Return a noisy float32 copy of ``image`` (same shape and intensity scale, not clipped).

    Gaussian: ``image + N(0, sigma)``. Poisson: with ``scale = peak / image.max()``,
    ``Poisson(clip(image, 0) * scale) / scale``. Poisson-Gaussian: Poisson, then
    ``+ N(0, sigma)`` in image units. Deterministic for a given ``seed``.
    """
    if not isinstance(spec, NoiseSpec):
        raise InputError(f"spec must be a NoiseSpec, got {type(spec).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    x = _as_real_image(image)
    rng = np.random.default_rng(int(seed))
    if spec.kind == "gaussian":
        noisy = x + rng.normal(0.0, spec.sigma, size=x.shape)
    else:
        top = float(x.max())
        if top <= 0:
            raise InputError(f"{spec.kind} noise needs an image with a positive maximum, got {top}")
        scale = spec.peak / top
        noisy = rng.poisson(np.clip(x, 0.0, None) * scale) / scale
        if spec.kind == "poisson-gaussian":
            noisy = noisy + rng.normal(0.0, spec.sigma, size=x.shape)
    return noisy.astype(np.float32)


def _slices(image: np.ndarray, name: str) -> list[np.ndarray]:
    """The 2-D YX planes of an image, a stack or a volume (..., Y, X) as float64."""
    x = _as_real_image(image, name)
    if x.ndim < 2:
        raise InputError(f"{name} must have Y and X axes, got shape {x.shape}")
    if min(x.shape[-2:]) < 8:
        raise InputError(f"{name} is too small to estimate noise (shape {x.shape}, need >= 8x8)")
    return list(x.reshape(-1, *x.shape[-2:]))


def estimate_gaussian_sigma(image: np.ndarray) -> float:
    """Estimate a Gaussian noise standard deviation in the image's intensity units.

    Uses the wavelet median-absolute-deviation estimator of scikit-image
    (:func:`skimage.restoration.estimate_sigma`); a 3-D stack is the mean of its per-slice
    estimates (a 3-D wavelet would mix slices that need not be spatially related).
    """
    from skimage.restoration import estimate_sigma

    return float(np.mean([estimate_sigma(s, channel_axis=None) for s in _slices(image, "image")]))


def _signal_and_detail(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local signal level and a unit-gain high-pass residual for one 2-D plane.

    The diagonal db2 detail coefficients are an orthonormal high-pass transform, so for
    independent noise each has (to first order) the local noise variance, while smooth
    image content up to linear ramps cancels. The matching approximation coefficients
    (halved, since the 2-D low-pass gain is 2), lightly smoothed, give the signal level at
    the same position. A border of two coefficients is dropped to avoid padding effects.
    """
    import pywt
    from scipy import ndimage

    approx, (_, _, diag) = pywt.dwt2(plane, "db2", mode="symmetric")
    signal = ndimage.gaussian_filter(approx / 2.0, sigma=1.0, mode="nearest")
    inner = (slice(2, -2), slice(2, -2))
    return signal[inner].ravel(), diag[inner].ravel()


def fit_line(
    s: np.ndarray, v: np.ndarray, w: np.ndarray, lo: float, min_var: float
) -> tuple[float, float]:
    """Weighted least-squares line ``v = a * s + b`` with ``a >= 0`` and ``a * lo + b >= min_var``.

    If the free fit breaks the second constraint, the line is pinned to ``(lo, min_var)``
    and only its (non-negative) slope is fitted.
    """
    w = w / w.sum()
    s_bar, v_bar = float(w @ s), float(w @ v)
    spread = float(w @ (s - s_bar) ** 2)
    a = max(float(w @ ((s - s_bar) * (v - v_bar))) / spread, 0.0) if spread > 0 else 0.0
    b = v_bar - a * s_bar
    if a * lo + b < min_var:
        ds = s - lo
        denom = float(w @ ds**2)
        a = max(float(w @ (ds * (v - min_var))) / denom, 0.0) if denom > 0 else 0.0
        b = min_var - a * lo
    return a, b


def _equal_count_bins(signal: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Indices of ``signal`` split into up to ``n_bins`` equal-count bins by level
    (at least ~50 values per bin, at least 2 bins; bins of < 2 values dropped)."""
    order = np.argsort(signal, kind="stable")
    n_bins = min(n_bins, max(2, signal.size // 50))
    return [g for g in np.array_split(order, n_bins) if g.size >= 2]


def estimate_poisson_gaussian(image: np.ndarray, n_bins: int = 20) -> tuple[float, float]:
    """Fit the signal-dependent noise model ``variance = a * signal + b`` to one noisy image.

    Follows the idea of Foi et al. (2008): local signal levels come from smoothed wavelet
    approximation coefficients and local noise from the diagonal wavelet detail residual
    (see :func:`_signal_and_detail`). The residuals are split into ``n_bins`` equal-count
    bins by signal level; each bin gets a robust variance ``(median|d| / 0.6745)**2`` that
    ignores the few edge and texture coefficients; a line is fitted through the bins by
    weighted least squares (weights ``n / variance**2``, the inverse variance of a variance
    estimate, iterated with fitted variances) under the constraints ``a >= 0`` and
    ``a * s + b > 0`` for every ``s`` from ``max(image.min(), 0)`` up (if the free fit
    breaks this, the line is pinned to a tiny positive variance at that lowest level).

    For pure Poisson noise ``noisy = Poisson(x * s) / s`` the truth is ``a = 1 / s, b = 0``;
    for additional Gaussian noise of std ``sigma``, ``b = sigma**2``. The estimate assumes
    mostly smooth content (strong texture inflates the variances) and is only reliable over
    the signal levels the image actually contains; outside them it is an extrapolation.

    Returns
    -------
    (a, b) : tuple of float
        Both in the image's intensity units (``a`` in units of intensity, ``b`` squared).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise InputError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    planes = _slices(image, "image")
    pairs = [_signal_and_detail(p) for p in planes]
    signal = np.concatenate([p[0] for p in pairs])
    detail = np.concatenate([p[1] for p in pairs])
    if signal.size < 100:
        shape = np.shape(image)
        raise InputError(f"image is too small to fit a noise model (shape {shape}, need ~26x26+)")
    groups = _equal_count_bins(signal, n_bins)
    levels = np.array([signal[g].mean() for g in groups])
    variances = np.array([(np.median(np.abs(detail[g])) / _MAD_TO_STD) ** 2 for g in groups])
    counts = np.array([g.size for g in groups], dtype=np.float64)

    if variances.max() <= 0:
        return 0.0, MIN_VARIANCE  # noise-free (e.g. constant) image
    # Positivity is required from the darkest pixel (or 0, where noise_variance clips) up.
    lo = max(min(float(p.min()) for p in planes), 0.0)
    min_var = max(1e-6 * float(variances.max()), MIN_VARIANCE)
    fitted = np.maximum(variances, min_var)
    for _ in range(3):  # iteratively reweighted: weights from the current fitted variances
        a, b = fit_line(levels, variances, counts / fitted**2, lo, min_var)
        fitted = np.maximum(a * np.clip(levels, 0.0, None) + b, min_var)
    return float(a), float(b)


def bootstrap_noise_model(observed: np.ndarray, estimate: np.ndarray, kind: str,
                          n_bins: int = 20) -> dict:
    """Noise model fitted to ``(observed - estimate)**2`` against ``estimate`` (PN2V's bootstrap).

    ``estimate`` is a denoised version of ``observed`` (e.g. a blind-spot prior mean). The
    squared residual's expectation is noise variance + the estimate's own error, so the
    fit errs on the side of too much noise - which makes a posterior lean on the prior,
    the safe direction - whereas a too-small noise model (wavelet estimates on correlated
    real noise) makes the posterior copy the noisy pixel. ``kind`` is ``gaussian``
    (returns ``sigma``) or ``poisson-gaussian`` (``a``, ``b``), in image units.
    """
    obs = np.asarray(observed, np.float64).ravel()
    est = np.asarray(estimate, np.float64).ravel()
    if obs.shape != est.shape or obs.size < 100:
        raise InputError(f"bootstrap noise model: need matching images of >= 100 pixels, got "
                         f"{np.shape(observed)} and {np.shape(estimate)}")
    r2 = (obs - est) ** 2
    if kind == "gaussian":
        return {"kind": "gaussian", "sigma": float(np.sqrt(max(r2.mean(), MIN_VARIANCE)))}
    groups = _equal_count_bins(est, n_bins)
    levels = np.array([est[g].mean() for g in groups])
    variances = np.array([r2[g].mean() for g in groups])
    weights = np.array([g.size for g in groups], np.float64)
    a, b = fit_line(np.clip(levels, 0, None), variances, weights,
                     float(np.clip(levels, 0, None).min()), float(variances.min()) * 0.5)
    return {"kind": "poisson-gaussian", "a": float(a), "b": float(b)}


def noise_variance(signal: ArrayT, a: float, b: float) -> ArrayT:
    """Noise variance ``a * clip(signal, 0) + b`` of the fitted model, floored at MIN_VARIANCE.

    Works on NumPy arrays and torch tensors (dtype, device and autograd are kept).
    """
    if not (math.isfinite(a) and math.isfinite(b)) or a < 0:
        raise InputError(f"noise model needs finite a >= 0 and finite b, got a={a}, b={b}")
    torch = sys.modules.get("torch")  # a tensor implies torch is imported
    if torch is not None and isinstance(signal, torch.Tensor):
        return (torch.clamp(signal, min=0) * a + b).clamp_min(MIN_VARIANCE)
    arr = np.asarray(signal)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return np.maximum(np.clip(arr, 0, None) * arr.dtype.type(a) + arr.dtype.type(b), MIN_VARIANCE)


def estimate_noise_model(slices: Sequence[np.ndarray], cfg: NoiseModelConfig,
                         names: Sequence[str] | None = None) -> dict:
    """The noise model in image units: the values ``cfg`` gives, the rest estimated.

    ``slices`` are 2-D samples; ``names`` (one per slice) name the file in the error
    when a slice cannot be used.
    """

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
