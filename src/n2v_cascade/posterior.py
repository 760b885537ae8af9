"""From a probabilistic network's prediction to the posterior mean and its uncertainty.

The network predicts the distribution N(mu, s2) of each *noisy* pixel from its context.
With a noise model (variance n2 per pixel) the clean signal's prior is N(mu, s2 - n2);
combined with the observed pixel this gives the posterior mean and std (Laine et al.
2019). Which noise model to use, when the predicted variance is recalibrated, and when
the posterior is not valid (noise correlated beyond the blind spot) is decided here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .config import NoiseModelConfig
from .errors import InputError

# Where the posterior mean takes its noise model from (see :func:`noise_for`).
NOISE_SOURCES = ("stored", "image", "bootstrap")


#: ``posterior`` choices of :func:`combine`: always, never, or per image by PG-URE.
POSTERIOR_CHOICES = (True, False, "auto")

#: Standard errors by which the posterior's estimated gain must exceed zero to be chosen.
CHOICE_MARGIN = 2.0


def posterior_mean(
    prior_mean: np.ndarray, noisy_var: np.ndarray, observed: np.ndarray, noise_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std of the clean signal given the observed noisy pixel.

    Closed form ``(mu * n2 + observed * p2) / (p2 + n2)`` with ``p2 = max(s2 - n2, eps)``;
    elementwise, in any consistent units.
    """
    prior_var = _prior_variance(noisy_var, noise_var)
    total = prior_var + noise_var
    mean = (prior_mean * noise_var + observed * prior_var) / total
    std = np.sqrt(prior_var * noise_var / total)
    return mean.astype(np.float32), std.astype(np.float32)


def posterior_weight(noisy_var: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """The weight ``w = p2 / (p2 + n2)`` of the observed pixel in :func:`posterior_mean`."""
    prior_var = _prior_variance(noisy_var, noise_var)
    return prior_var / (prior_var + noise_var)


def _prior_variance(noisy_var: np.ndarray, noise_var: np.ndarray) -> np.ndarray:
    """The clean signal's prior variance ``p2 = max(s2 - n2, eps)``."""
    eps = 1e-12 + 1e-6 * np.maximum(noise_var, 0)
    return np.maximum(noisy_var - noise_var, eps)


def binned_residual_variance(observed: np.ndarray, prior_mean: np.ndarray, n_bins: int = 20
                             ) -> np.ndarray:
    """``E[(observed - prior mean)**2 | prior mean]`` at every pixel (equal-count bins of
    the prior mean, interpolated).

    For a blind-spot prior this is the noise variance plus the prior's own error at that
    brightness, so it never underestimates the noise, whatever the noise's shape
    (clipped, quantised, not linear in the signal).
    """
    mu = np.asarray(prior_mean, np.float64).ravel()
    r2 = (np.asarray(observed, np.float64).ravel() - mu) ** 2
    groups = np.array_split(np.argsort(mu, kind="stable"), min(n_bins, max(mu.size, 1)))
    groups = [g for g in groups if g.size]
    levels = np.array([mu[g].mean() for g in groups])
    variances = np.array([r2[g].mean() for g in groups])
    return np.interp(mu, levels, variances).reshape(np.shape(prior_mean))


def posterior_gain(observed: np.ndarray, prior_mean: np.ndarray, weight: np.ndarray,
                   noise_var: np.ndarray, block: int = 32) -> tuple[float, float]:
    """Estimated ``MSE(posterior) - MSE(prior)`` of one image, and its standard error.

    The posterior ``mu + w (x - mu)`` is linear in the observed pixel ``x`` and the prior
    ``mu`` (and ``w``) never saw it, so Stein's unbiased risk estimate, which for a
    Poisson-Gaussian likelihood is the same expression (PG-URE of an estimator linear in
    ``x``), gives the difference without ground truth:
    ``mean(w * (2 n2 - (2 - w) (x - mu)**2))``. It is unbiased with the true noise
    variance ``n2`` and errs towards the prior with a larger one. The standard error is
    taken over ``block``-sided tiles (neighbouring pixels' terms are correlated).
    """
    r2 = (np.asarray(observed, np.float64) - prior_mean) ** 2
    w = np.asarray(weight, np.float64)
    terms = w * (2.0 * noise_var - (2.0 - w) * r2)
    if terms.ndim < 2 or min(terms.shape[-2:]) < 2 * block:
        return float(terms.mean()), float(terms.std() / np.sqrt(max(terms.size, 1)))
    h, wd = (terms.shape[-2] // block) * block, (terms.shape[-1] // block) * block
    tiles = terms[..., :h, :wd].reshape(*terms.shape[:-2], h // block, block, wd // block,
                                        block).mean(axis=(-3, -1)).ravel()
    return float(terms.mean()), float(tiles.std(ddof=1) / np.sqrt(tiles.size))


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


def residual_noise(samples: np.ndarray, prior_mean: np.ndarray) -> dict | None:
    """A Poisson-Gaussian noise model read from the residual's quietest blocks
    (:func:`n2v_cascade.blend.residual_noise_line`), or None for too small an image."""
    from .blend import residual_noise_line

    line = residual_noise_line(samples, prior_mean)
    return None if line is None else {"kind": "poisson-gaussian", "a": line[0], "b": line[1]}


def noise_variance(signal: np.ndarray, noise: Mapping[str, Any] | None) -> np.ndarray:
    """Per-pixel noise variance (image units) under a noise model (none: zero)."""
    from .noise import noise_variance as poisson_gaussian_variance

    nm = dict(noise or {})
    if nm.get("kind") == "poisson-gaussian":
        return poisson_gaussian_variance(signal, nm["a"], nm["b"]).astype(np.float32)
    return np.full(signal.shape, nm.get("sigma", 0.0) ** 2, np.float32)


def correlated_beyond(samples: np.ndarray, blind_radius: int, warn: bool = True) -> bool:
    """Say True (and warn, if ``warn``) when the noise of an image's ``(N, *spatial)``
    samples is correlated beyond the blind spot (measured on the YX planes, so 3-D
    samples are checked plane by plane).

    The posterior assumes the observed pixel's noise is independent of everything the
    prior saw; correlated noise breaks that and the posterior then falls below the prior.
    """
    from .axes import planes
    from .correlation import suggest_blind_radius

    need, corr = suggest_blind_radius(planes(samples))
    if need <= blind_radius:
        return False
    if not warn:
        return True
    warnings.warn(
        f"the noise of this image looks spatially correlated (neighbour correlation "
        f"{corr[:, 0].max():.2f}) beyond the model's blind spot (radius {blind_radius}); "
        f"the posterior would count it twice, so the prior mean is returned (train with "
        f"--blind-radius auto for such data)", UserWarning, stacklevel=4)
    return True


def combine(samples: np.ndarray, est: dict[str, np.ndarray], *, blind: bool, blind_radius: int,
            posterior: bool | str, noise: dict | None, check_noise: dict | None = None,
            info: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (or prior) mean and the signal's std from a mean/variance prediction
    of an image's ``(N, *spatial)`` samples.

    ``blind``: the network never saw the pixel, so its variance is calibrated on the
    image and the posterior is exact; otherwise the posterior counts the observation
    twice (a warning says so). ``posterior="auto"`` (blind networks) returns the
    posterior only where :func:`choose_posterior` estimates, with the noise model
    ``check_noise`` (default ``noise``), that it is better than the prior; ``info`` (a
    dict) receives what was chosen and the estimates.
    """
    if posterior not in POSTERIOR_CHOICES:
        raise InputError(f"posterior must be True, False or 'auto', got {posterior!r}")
    var = calibrate_variance(samples, est["mean"], est["var"]) if blind else est["var"]
    noise_var = noise_variance(est["mean"], noise)
    if posterior is True and not blind:
        warnings.warn(
            "posterior mean with a masked U-Net backbone: the network saw each pixel at "
            "prediction time, so the observation is counted twice; train with "
            "--backbone blindspot for an exact posterior", UserWarning, stacklevel=3)
    if posterior == "auto":
        posterior = blind and not correlated_beyond(samples, blind_radius, warn=False)
        if posterior:
            model = check_noise if check_noise is not None else noise
            checks = [noise_variance(samples, model), noise_variance(est["mean"], model)]
            posterior = choose_posterior(samples, est["mean"], var, noise_var, checks, info)
    elif posterior and correlated_beyond(samples, blind_radius):
        posterior = False
    if info is not None:
        info["posterior"] = bool(posterior)
    # the reported spread never claims more certainty than this image's residual allows
    signal_var = np.maximum(np.maximum(var - noise_var, 0),
                            resolvable_signal_variance(samples, est["mean"], noise_var))
    if posterior:
        mean, _ = posterior_mean(est["mean"], var, samples, noise_var)
        std = np.sqrt(signal_var * noise_var / np.maximum(signal_var + noise_var, 1e-30))
        return mean, std.astype(np.float32)
    return est["mean"], np.sqrt(signal_var).astype(np.float32)


def choose_posterior(samples: np.ndarray, prior_mean: np.ndarray, noisy_var: np.ndarray,
                     noise_var: np.ndarray, check_var: np.ndarray | Sequence[np.ndarray],
                     info: dict | None = None) -> bool:
    """True when the posterior (computed with ``noise_var``) is estimated to beat the
    prior on this image by more than ``CHOICE_MARGIN`` standard errors.

    The estimate is :func:`posterior_gain` with ``check_var``, the noise variance at each
    pixel, capped by the residual variance at each brightness
    (:func:`binned_residual_variance`), which no noise can exceed. Given several
    readings (``combine`` passes the noise at the observed value and at the prior
    mean), the least favourable to the posterior decides: at the observed value the
    reading is unbiased for Poisson-Gaussian noise, but the cap trims it low where a few
    photons make the value jump; at the prior mean it is smooth, but biased where the
    prior is. ``info`` receives ``score_prior`` and ``score_posterior``:
    ground-truth-free scores on the scale of :mod:`n2v_cascade.gtfree` (true MSE plus
    the mean noise variance) and the standard error of their difference.
    """
    weight = posterior_weight(noisy_var, noise_var)
    cap = binned_residual_variance(samples, prior_mean)
    readings = [check_var] if isinstance(check_var, np.ndarray) else list(check_var)
    gain, error = max(posterior_gain(samples, prior_mean, weight, np.minimum(c, cap))
                      for c in readings)
    prior_score = float(np.mean((np.asarray(samples, np.float64) - prior_mean) ** 2))
    if info is not None:
        info.update(score_prior=prior_score, score_posterior=prior_score + gain,
                    score_error=error)
    return gain + CHOICE_MARGIN * error < 0


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
