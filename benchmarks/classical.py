"""Classical baselines: BM3D, non-local means, total variation, wavelet (BayesShrink).

All work on one 2-D float image in its own units with the data set's ``data_range``:

* BM3D (``bm3d`` package, profile ``np``): Gaussian noise with the true sigma; Poisson /
  Poisson-Gaussian noise through the generalised Anscombe transform (GAT) with the true
  (synthetic) or estimated (real noise, :func:`n2v_cascade.noise.estimate_poisson_gaussian`)
  ``a, b`` of ``var = a * signal + b``, BM3D with sigma 1 in the stabilised domain, and the
  closed-form approximation of the exact unbiased inverse (Makitalo & Foi 2011) minus
  ``b / a**2`` (no Gaussian-part correction).
* NLM (scikit-image, fast mode, 5x5 patches, distance 6): ``sigma`` = skimage's wavelet
  estimate, ``h = 0.6 * sigma`` (the scikit-image gallery setting).
* TV (Chambolle): ``weight = 1.0 * sigma_est`` on the image divided by ``data_range``;
  the factor 1.0 was picked on ``skimage.data.camera()`` / ``moon()`` (sigma 25 and
  Poisson peak 30), never on a benchmark image.
* Wavelet: scikit-image ``denoise_wavelet`` defaults (db1, BayesShrink, soft,
  sigma estimated internally).

NLM, TV and wavelet see the noisy image directly (no variance stabilisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

TV_FACTOR = 1.0
NLM_H = 0.6


def gat_forward(z: np.ndarray, a: float, b: float) -> np.ndarray:
    """Generalised Anscombe transform for ``var = a * signal + b`` (unit noise after)."""
    return 2.0 * np.sqrt(np.maximum(z / a + 0.375 + b / a**2, 0.0))


def gat_inverse(d: np.ndarray, a: float, b: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse, back to image units."""
    d = np.maximum(d, 0.8)  # the closed form is only meaningful for d well above 0
    s = np.sqrt(1.5)
    counts = 0.25 * d**2 + 0.25 * s / d - 1.375 / d**2 + 0.625 * s / d**3 - 0.125
    return a * (counts - b / a**2)


def bm3d_denoise(noisy: np.ndarray, sigma: float | None, gat: tuple[float, float] | None,
                 data_range: float) -> np.ndarray:
    """BM3D with the true sigma (Gaussian) or in the GAT domain (signal-dependent noise)."""
    import bm3d

    if gat is None:
        assert sigma is not None
        scaled = noisy.astype(np.float64) / data_range
        return np.asarray(bm3d.bm3d(scaled, sigma_psd=sigma / data_range)) * data_range
    a, b = gat
    stabilised = gat_forward(noisy.astype(np.float64), a, b)
    return gat_inverse(np.asarray(bm3d.bm3d(stabilised, sigma_psd=1.0)), a, b)


def nlm_denoise(noisy: np.ndarray, data_range: float) -> np.ndarray:
    """scikit-image non-local means with its own wavelet sigma estimate."""
    from skimage.restoration import denoise_nl_means, estimate_sigma

    x = noisy.astype(np.float64) / data_range
    sigma = float(estimate_sigma(x))
    out = denoise_nl_means(x, h=NLM_H * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                           patch_distance=6)
    return out * data_range


def tv_denoise(noisy: np.ndarray, data_range: float) -> np.ndarray:
    """Chambolle TV with ``weight = TV_FACTOR * sigma_est`` (wavelet MAD estimate)."""
    from skimage.restoration import denoise_tv_chambolle, estimate_sigma

    x = noisy.astype(np.float64) / data_range
    sigma = float(estimate_sigma(x))
    return denoise_tv_chambolle(x, weight=TV_FACTOR * sigma) * data_range


def wavelet_denoise(noisy: np.ndarray, data_range: float) -> np.ndarray:
    """scikit-image BayesShrink wavelet denoising with default settings."""
    from skimage.restoration import denoise_wavelet

    x = noisy.astype(np.float64) / data_range
    return denoise_wavelet(x, method="BayesShrink", mode="soft", rescale_sigma=True) * data_range


def baselines(ds) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The baseline denoisers for a :class:`~benchmarks.datasets.Dataset`, by row name."""
    from n2v_cascade.noise import estimate_poisson_gaussian

    def bm3d_fn(noisy: np.ndarray) -> np.ndarray:
        gat = ds.gat
        if ds.real_noise:
            a, b = estimate_poisson_gaussian(noisy)
            gat = (max(a, 1e-3), max(b, 0.0))
        return bm3d_denoise(noisy, ds.sigma, gat, ds.data_range)

    if ds.real_noise:
        bm3d_name = "BM3D (GAT, estimated a,b)"
    elif ds.gat is not None:
        bm3d_name = "BM3D (Anscombe, true peak)"
    else:
        bm3d_name = "BM3D (true sigma)"
    return {
        bm3d_name: bm3d_fn,
        "NLM (skimage, est. sigma)": lambda n: nlm_denoise(n, ds.data_range),
        "TV Chambolle (w = sigma_est)": lambda n: tv_denoise(n, ds.data_range),
        "Wavelet BayesShrink": lambda n: wavelet_denoise(n, ds.data_range),
    }


def run_baseline(fn: Callable[[np.ndarray], np.ndarray],
                 images: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Denoise every image; return the results and the total seconds."""
    t0 = time.perf_counter()
    out = [np.asarray(fn(im), dtype=np.float32) for im in images]
    return out, time.perf_counter() - t0
