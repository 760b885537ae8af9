"""A method defined outside the package, in one file: a sub-sampled pair method.

It shows that a method whose training step is not "mask, one forward pass, masked
loss" plugs in through :meth:`Method.step_loss` alone: each 2x2 cell of a patch gives
two sub-images (top-left and bottom-right pixels), and the network learns to map one
to the other (the idea of Neighbor2Neighbor, reduced to its simplest form).
"""

from __future__ import annotations

import torch

from n2v_cascade.methods.base import Method, masked_mean


class ToyPairs(Method):
    """Predict one sub-sampled noisy image from its neighbouring sub-image."""

    name = "toy-pairs"
    label = "Toy pairs"
    short_label = "Toy"
    summary = "sub-sampled noisy pairs (a test plug-in)"
    citation = "none: a test method"
    defaults = {"learning_rate": 2e-3}
    listing_order = 999

    def step_loss(self, patches: torch.Tensor, generator: torch.Generator, run) -> torch.Tensor:
        first = patches[..., 0::2, 0::2]
        second = patches[..., 1::2, 1::2]
        return masked_mean((run(first) - run.put(second)) ** 2, None)
