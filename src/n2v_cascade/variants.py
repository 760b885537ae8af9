"""The N2V variants: each says how to mask, which network head and loss, how to predict.

A variant is a small object; the training loop and the prediction code only call the
four methods of :class:`Variant`. Adding a variant means writing a subclass and adding
it to :data:`REGISTRY` -- nothing else changes.

All tensors here are in normalised units, shape (B, C, *spatial).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .errors import InputError
from .masking import apply_masking, grid_mask, line_kernel, random_mask, validate_kernel
from .models import BlindSpotNet, UNet

# Log-variance bounds in normalised units (data std 1): a floor of exp(-9) (std 1.1% of the
# data's) keeps one badly predicted pixel from producing a loss of millions on smooth input.
LOGVAR_MIN, LOGVAR_MAX = -9.0, 10.0


class Variant:
    """Base variant: original Noise2Void (random blind-spot masking, MSE on masked pixels)."""

    name = "n2v"
    out_channels = 1
    masked = True  # False: the network itself is blind to the centre pixel
    probabilistic = False

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.kernel = self._struct_kernel(config)

    @staticmethod
    def _struct_kernel(config: TrainConfig) -> np.ndarray | None:
        if config.mask.struct is not None:
            return line_kernel(config.mask.struct)
        if config.mask.struct_kernel is not None:
            return validate_kernel(np.asarray(config.mask.struct_kernel, bool), "struct_kernel")
        return None

    # -- network -----------------------------------------------------------------
    def build_network(self, ndim: int = 2) -> nn.Module:
        """The shared backbone, sized by the config, with this variant's head."""
        net, radius = self.config.network, self.config.resolved_blind_radius
        if radius == "auto":
            raise InputError("network.blind_radius is 'auto' (the blind-spot default): "
                             "train() chooses it from the training images; give a number "
                             "to build the network without training")
        if self.config.resolved_backbone == "blindspot":
            return BlindSpotNet(1, self.out_channels, depth=net.depth, width=net.width,
                                ndim=ndim, growth=net.growth, blind_radius=radius,
                                ring_residual=self.config.resolved_ring_residual)
        return UNet(1, self.out_channels, depth=net.depth, width=net.width, ndim=ndim,
                    growth=net.growth, **self._unet_options())

    def _unet_options(self) -> dict:
        return {}

    # -- training ----------------------------------------------------------------
    def make_mask(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """Which pixels are hidden from the network and scored by the loss."""
        mcfg = self.config.mask
        if mcfg.pattern == "grid":
            return grid_mask(shape, mcfg.stride, generator)
        return random_mask(shape, mcfg.fraction, generator)

    def training_batch(
        self, patches: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(network input, target, loss mask or None for every pixel)."""
        if not self.masked:
            return patches, patches, None
        mask = self.make_mask(patches.shape, generator)
        inputs = apply_masking(
            patches, mask, self.config.mask.replacement, self.config.mask.radius, generator,
            kernel=self.kernel,
        )
        return inputs, patches, mask

    def loss(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean squared error on the scored pixels."""
        err = (output[:, :1] - target) ** 2
        return _masked_mean(err, mask)

    # -- prediction --------------------------------------------------------------
    def estimate(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Turn raw network output into named estimates (``mean``; ``var`` if predicted)."""
        return {"mean": output[:, :1]}


def _gaussian_nll(squared_error: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-pixel Gaussian negative log-likelihood from the squared error and log-variance."""
    return 0.5 * (logvar + squared_error * torch.exp(-logvar) + math.log(2 * math.pi))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    m = mask.expand_as(values).to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


class N2V2(Variant):
    """N2V2 (Hoeck et al. 2022): blur-pool, no top skip, median replacement."""

    name = "n2v2"

    def _unet_options(self) -> dict:
        return {"blurpool": True, "top_skip": False}


class Structured(Variant):
    """Structured masking: a grid of masked pixels (and optional structN2V line masks).

    The config defaults ``mask.pattern`` to ``grid`` for this variant; everything else is
    the base class's.
    """

    name = "structured"


class BlindSpot(Variant):
    """Laine et al. (2019) blind-spot network: no masking, loss on every pixel."""

    name = "blindspot"
    masked = False


class Probabilistic(Variant):
    """Probabilistic N2V: predicts mean and log-variance, Gaussian negative log-likelihood.

    With a masked backbone the NLL is taken on masked pixels; with the blind-spot
    backbone (``backbone: blindspot``) on every pixel; see ``TrainConfig.nll_beta``.
    The predicted variance is that of the *noisy* value given its surroundings; the
    posterior mean (see :func:`posterior_mean`) splits it into signal prior and noise.
    """

    name = "probabilistic"
    out_channels = 2
    probabilistic = True

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.masked = config.resolved_backbone != "blindspot"

    def loss(
        self, output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        mean = output[:, :1]
        logvar = output[:, 1:2].clamp(LOGVAR_MIN, LOGVAR_MAX)
        if self.config.resolved_mean_loss == "mse":
            # decoupled: squared error for the mean, NLL of its residual for the variance;
            # the per-pixel minimiser is again the true mean and variance
            nll = _gaussian_nll((target - mean.detach()) ** 2, logvar)
            return _masked_mean(0.5 * (target - mean) ** 2 + nll, mask)
        nll = _gaussian_nll((target - mean) ** 2, logvar)
        beta = self.config.resolved_nll_beta
        if beta > 0:
            # beta-NLL (Seitzer et al. 2022): weight each pixel by var**beta, held constant
            # for the gradient, so a pixel whose variance collapsed cannot dominate the
            # mean's gradient. The per-pixel minimiser (true mean and variance) is unchanged.
            nll = nll * torch.exp(beta * logvar).detach()
        return _masked_mean(nll, mask)

    def estimate(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        logvar = output[:, 1:2].clamp(LOGVAR_MIN, LOGVAR_MAX)
        return {"mean": output[:, :1], "var": torch.exp(logvar)}


def posterior_mean(
    prior_mean: np.ndarray, noisy_var: np.ndarray, observed: np.ndarray, noise_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std of the clean signal given the observed noisy pixel.

    The network predicts the noisy value's distribution N(mu, s2) from the context;
    the clean prior is N(mu, s2 - n2) with n2 the noise variance. Combining it with the
    Gaussian likelihood N(observed; x, n2) gives the closed form
    ``(mu * n2 + observed * p2) / (p2 + n2)`` with ``p2 = max(s2 - n2, eps)``
    (Laine et al. 2019). Works elementwise in any consistent units.
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
    training leaves it off by a factor (0.8-1.6 on BSD68), which shifts the posterior's
    weights between prior and observation; one factor per image restores it (+0.25 to
    +0.9 dB posterior PSNR on BSD68 at a 180 s budget, benchmarks/RESULTS.md).
    """
    total = float(np.mean(noisy_var, dtype=np.float64))
    if not total > 0:
        return noisy_var
    obs, mu = np.asarray(observed).reshape(-1), np.asarray(prior_mean).reshape(-1)
    step = 1 << 22  # chunks keep the float64 temporaries small for huge images
    resid = sum(float(np.sum((obs[i:i + step].astype(np.float64) - mu[i:i + step]) ** 2))
                for i in range(0, obs.size, step)) / max(obs.size, 1)
    return (noisy_var * np.float32(resid / total)).astype(noisy_var.dtype, copy=False)


REGISTRY: dict[str, type[Variant]] = {
    cls.name: cls for cls in (Variant, N2V2, Structured, BlindSpot, Probabilistic)
}


def get_variant(config: TrainConfig) -> Variant:
    """Instantiate the variant named in the config."""
    return REGISTRY[config.variant](config)
