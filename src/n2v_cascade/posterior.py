"""From a probabilistic network's prediction to the posterior mean and its uncertainty.

The network predicts the distribution N(mu, s2) of each *noisy* pixel from its context.
With a noise model (variance n2 per pixel) the clean signal's prior is N(mu, s2 - n2);
combined with the observed pixel this gives the posterior mean and std (Laine et al.
2019). Which noise model to use, when the predicted variance is recalibrated, and when
the posterior is not valid (noise correlated beyond the blind spot) is decided here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import NoiseModelConfig
from .errors import InputError

# Where the posterior mean takes its noise model from (see :func:`noise_for`).
NOISE_SOURCES = ("stored", "image", "bootstrap")


def posterior_mean(
    prior_mean: np.ndarray, noisy_var: np.ndarray, observed: np.ndarray, noise_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std of the clean signal given the observed noisy pixel.

    Closed form ``(mu * n2 + observed * p2) / (p2 + n2)`` with ``p2 = max(s2 - n2, eps)``;
    elementwise, in any consistent units.
    """
    eps = 1e-12 + 1e-6 * np.maximum(noise_var, 0)
    prior_var = np.maximum(noisy_var - noise_var, eps)
    total = prior_var + noise_var
    mean = (prior_mean * noise_var + observed * prior_var) / total
    std = np.sqrt(prior_var * noise_var / total)
    return mean.astype(np.float32), std.astype(np.float32)


def calibrate_variance(observed: np.ndarray, prior_mean: np.ndarray, noisy_var: np.ndarray
                       ) -> np.ndarray:
    """Scale a blind-spot net's predicted variance so it matches this image's residual.

    A blind-spot prediction never saw the pixel, so ``E[(observed - mean)**2]`` equals the
    predicted variance of the noisy value when that is calibrated. Short or averaged
    training leaves it off by a factor; one factor per image restores it.
    """
    total = float(np.mean(noisy_var, dtype=np.float64))
    if not total > 0:
        return noisy_var
    obs, mu = np.asarray(observed).reshape(-1), np.asarray(prior_mean).reshape(-1)
    step = 1 << 22  # chunks keep the float64 temporaries small for huge images
    resid = sum(float(np.sum((obs[i:i + step].astype(np.float64) - mu[i:i + step]) ** 2))
                for i in range(0, obs.size, step)) / max(obs.size, 1)
    return (noisy_var * np.float32(resid / total)).astype(noisy_var.dtype, copy=False)


def noise_for(samples: np.ndarray, choice: str | Mapping[str, Any], stored: dict | None,
              config: NoiseModelConfig, prior_mean: np.ndarray) -> dict | None:
    """The noise model for one image's ``(N, *spatial)`` samples: ``stored`` (fitted on
    the training data), ``image`` (fitted on this image), ``bootstrap`` (fitted to this
    image's residual from the prior mean, as PN2V does), or a mapping like the stored one."""
    from .noise import bootstrap_noise_model, estimate_noise_model

    if isinstance(choice, Mapping):
        return dict(choice)
    if choice == "stored":
        return stored
    if choice == "image":
        return estimate_noise_model(list(samples), config)
    if choice == "bootstrap":
        return bootstrap_noise_model(samples, prior_mean, config.kind)
    raise InputError(f"noise_model must be one of {', '.join(NOISE_SOURCES)} or a "
                     f"mapping, got {choice!r}")


def noise_variance(signal: np.ndarray, noise: Mapping[str, Any] | None) -> np.ndarray:
    """Per-pixel noise variance (image units) under a noise model (none: zero)."""
    from .noise import noise_variance as poisson_gaussian_variance

    nm = dict(noise or {})
    if nm.get("kind") == "poisson-gaussian":
        return poisson_gaussian_variance(signal, nm["a"], nm["b"]).astype(np.float32)
    return np.full(signal.shape, nm.get("sigma", 0.0) ** 2, np.float32)


def correlated_beyond(samples: np.ndarray, blind_radius: int) -> bool:
    """Warn and say True when the noise of an image's ``(N, *spatial)`` samples is
    correlated beyond the blind spot.

    The posterior assumes the observed pixel's noise is independent of everything the
    prior saw; correlated noise breaks that and the posterior then falls below the prior.
    """
    from .correlation import suggest_blind_radius

    need, corr = suggest_blind_radius(list(samples))
    if need <= blind_radius:
        return False
    warnings.warn(
        f"the noise of this image looks spatially correlated (neighbour correlation "
        f"{corr[:, 0].max():.2f}) beyond the model's blind spot (radius {blind_radius}); "
        f"the posterior would count it twice, so the prior mean is returned (train with "
        f"--blind-radius auto for such data)", UserWarning, stacklevel=4)
    return True


def combine(samples: np.ndarray, est: dict[str, np.ndarray], *, blind: bool, blind_radius: int,
            posterior: bool, noise: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (or prior) mean and the signal's std from a mean/variance prediction
    of an image's ``(N, *spatial)`` samples.

    ``blind``: the network never saw the pixel, so its variance is calibrated on the
    image and the posterior is exact; otherwise the posterior counts the observation
    twice (a warning says so).
    """
    var = calibrate_variance(samples, est["mean"], est["var"]) if blind else est["var"]
    noise_var = noise_variance(est["mean"], noise)
    if posterior and not blind:
        warnings.warn(
            "posterior mean with a masked U-Net backbone: the network saw each pixel at "
            "prediction time, so the observation is counted twice; train with "
            "--backbone blindspot for an exact posterior", UserWarning, stacklevel=3)
    if posterior and correlated_beyond(samples, blind_radius):
        posterior = False
    # the reported spread never claims more certainty than this image's residual allows
    signal_var = np.maximum(np.maximum(var - noise_var, 0),
                            resolvable_signal_variance(samples, est["mean"], noise_var))
    if posterior:
        mean, _ = posterior_mean(est["mean"], var, samples, noise_var)
        std = np.sqrt(signal_var * noise_var / np.maximum(signal_var + noise_var, 1e-30))
        return mean, std.astype(np.float32)
    return est["mean"], np.sqrt(signal_var).astype(np.float32)


#: Side of the neighbourhood over which the residual's spread is measured.
RESIDUAL_WINDOW = 15


def resolvable_signal_variance(samples: np.ndarray, prior_mean: np.ndarray,
                               noise_var: np.ndarray, window: int = RESIDUAL_WINDOW
                               ) -> np.ndarray:
    """The smallest signal variance around each pixel that this image can vouch for.

    The squared residual ``(observed - prior mean)**2`` averaged over a ``window``-sided
    neighbourhood estimates the noisy value's variance there; minus the noise variance it
    estimates how far the prior mean can be off. That estimate is itself uncertain by
    about ``sqrt(2 / n)`` of the local variance (``n`` pixels, Gaussian residuals), so a
    signal variance below that cannot be told apart from zero: it is the floor. A map
    built on it never shows a pixel as certain where the residual does not support it.
    """
    from scipy.ndimage import uniform_filter

    resid = (np.asarray(samples, np.float32) - prior_mean) ** 2
    size = (1,) + (window,) * (resid.ndim - 1)  # samples stay apart
    local = uniform_filter(resid, size=size, mode="reflect")
    n = window ** (resid.ndim - 1)
    return np.maximum(local - noise_var, np.sqrt(2.0 / n) * local)
