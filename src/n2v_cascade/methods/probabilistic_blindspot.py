"""Probabilistic N2V on the blind-spot network: the method with an exact posterior."""

from __future__ import annotations

from . import register
from .probabilistic import Probabilistic


@register
class ProbabilisticBlindSpot(Probabilistic):
    """Mean and variance from a network that never saw the pixel.

    Because the prediction is independent of the observed pixel, the posterior mean
    (prior from the network, likelihood from a noise model) counts the observation once,
    and the predicted variance can be calibrated on each image's residual. The mean is
    trained by squared error, the variance by the NLL of its residual (``mean_loss:
    mse``): the mean then learns as fast as a plain blind-spot network's.
    """

    name = "probabilistic-blindspot"
    listing_order = 60
    label = "Probabilistic Blind-Spot N2V"
    short_label = "ProbBSN"
    summary = ("probabilistic blind-spot network: uncertainty and an exact posterior mean "
               "(--posterior); the best single model on Gaussian noise given long "
               "training")
    citation = ("Laine, Karras, Lehtinen, Aila. High-Quality Self-Supervised Deep Image "
                "Denoising. NeurIPS 2019; " + Probabilistic.citation)
    backbone = "blindspot"
    variant_of = "probabilistic"
    # a blind-spot step costs several U-Net steps, so fewer default epochs (docs/DECISIONS.md)
    defaults = {"epochs": 10, "network": {"blind_radius": "auto", "ring_residual": True}}
    default_mean_loss = "mse"
    default_nll_beta = 0.0  # plain NLL keeps the variance calibrated for the posterior
