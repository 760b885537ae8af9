"""Probabilistic N2V on the masked U-Net: mean and variance, beta-NLL loss."""

from __future__ import annotations

from typing import Any

import torch

from . import register
from .base import LOGVAR_MAX, LOGVAR_MIN, Method, gaussian_nll, masked_mean


@register
class Probabilistic(Method):
    """Predicts the mean and log-variance of each noisy pixel given its surroundings.

    The loss is the Gaussian NLL (``mean_loss: nll``) weighted by beta-NLL (Seitzer et
    al. 2022; ``nll_beta`` 0.5: plain NLL diverged when retraining on smooth cascade
    outputs), or squared error for the mean plus the NLL of its gradient-stopped residual
    for the variance (``mean_loss: mse``). Either way the per-pixel minimiser is the
    true mean and variance.
    """

    name = "probabilistic"
    listing_order = 50
    label = "Probabilistic N2V"
    short_label = "ProbN2V"
    summary = "probabilistic N2V: a denoised image plus a per-pixel uncertainty"
    citation = ("Krull, Vicar, Prakash, Lalit, Jug. Probabilistic Noise2Void: Unsupervised "
                "Content-Aware Denoising. Frontiers in Computer Science 2020")
    out_channels = 2
    loss_name = "nll (can be < 0)"  # negative log-likelihood: lower is better
    predicts_variance = True
    default_mean_loss = "nll"
    default_nll_beta = 0.5

    @classmethod
    def with_defaults(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Fill in the loss: given ``nll_beta`` implies ``mean_loss: nll``."""
        values = super().with_defaults(values)
        if values.get("mean_loss") is None:
            given = values.get("nll_beta") is not None
            values["mean_loss"] = "nll" if given else cls.default_mean_loss
        if values["mean_loss"] == "nll" and values.get("nll_beta") is None:
            values["nll_beta"] = cls.default_nll_beta
        return values

    @classmethod
    def validate(cls, config) -> None:
        super().validate(config)
        if config.mean_loss == "mse" and config.nll_beta:
            raise ValueError("nll_beta: applies to mean_loss 'nll' only")

    def loss(self, output: torch.Tensor, target: torch.Tensor,
             mask: torch.Tensor | None) -> torch.Tensor:
        c = self.channels
        mean = output[:, :c]
        logvar = output[:, c:2 * c].clamp(LOGVAR_MIN, LOGVAR_MAX)
        if self.config.mean_loss == "mse":
            nll = gaussian_nll((target - mean.detach()) ** 2, logvar)
            return masked_mean(0.5 * (target - mean) ** 2 + nll, mask)
        nll = gaussian_nll((target - mean) ** 2, logvar)
        beta = self.config.nll_beta or 0.0
        if beta > 0:
            # each pixel weighted by var**beta, constant for the gradient, so a pixel whose
            # variance collapsed cannot dominate the mean's gradient
            nll = nll * torch.exp(beta * logvar).detach()
        return masked_mean(nll, mask)

    def estimate(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.channels
        logvar = output[:, c:2 * c].clamp(LOGVAR_MIN, LOGVAR_MAX)
        return {"mean": output[:, :c], "var": torch.exp(logvar)}
