"""Ground-truth-free error of a chain of denoisers (Noise2Self, Batson & Royer 2019).

Users never have clean images; this score tells them which cascade stage to keep. It
hides pixels of the original noisy image, runs the chain on the masked image, and
compares the output with the hidden noisy values: for pixel-wise independent zero-mean
noise its expectation is the true MSE plus the noise variance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .masking import replace_random_neighbour

Denoiser = Callable[[np.ndarray], np.ndarray]



@dataclass(frozen=True)
class GTFreeOptions:
    """Masks of the GT-free estimate: ``n_masks`` disjoint grid phases of ``stride``."""

    stride: int = 4
    n_masks: int = 4
    radius: int = 2
    seed: int = 0


class SelfSupervisedError:
    """Ground-truth-free error of a chain of denoisers (Noise2Self, Batson & Royer 2019).

    A grid of pixels of the *original* noisy image is hidden (replaced by a random
    neighbour, as N2V masking does; stride > radius so no hidden value is copied), the
    chain runs on the masked image, and the score is the mean squared difference between
    the output and the original noisy values at the hidden pixels. The chain never sees a
    hidden value, so for pixel-wise independent zero-mean noise the score's expectation is
    true MSE + mean noise variance: it ranks stages like the true MSE. ``n_masks`` disjoint
    phases cover more pixels. The estimate is of the chain applied to the masked image,
    which differs from the unmasked run by a few copied pixels.
    """

    def __init__(self, images: Sequence[np.ndarray], options: GTFreeOptions | None = None):
        opts = options or GTFreeOptions()
        if opts.stride <= opts.radius or not 1 <= opts.n_masks <= opts.stride**2:
            raise InputError(f"GT-free estimate: need stride > radius and 1 <= n_masks <= "
                             f"stride**2, got {opts}")
        self.options = opts
        self.images = [np.asarray(im, np.float32) for im in images]
        phases = np.random.default_rng(opts.seed).permutation(opts.stride**2)[: opts.n_masks]
        gen = torch.Generator().manual_seed(opts.seed)
        self.hidden: list[list[np.ndarray]] = []
        self.states: list[list[np.ndarray]] = []
        for phase in phases:
            pairs = [self._mask(im, divmod(int(phase), opts.stride), gen) for im in self.images]
            self.states.append([p[0] for p in pairs])
            self.hidden.append([p[1] for p in pairs])

    def _mask(self, image: np.ndarray, phase: tuple[int, int], gen: torch.Generator):
        x = torch.from_numpy(image.reshape(-1, 1, *image.shape[-2:]).copy())
        mask = torch.zeros(x.shape, dtype=torch.bool)
        mask[..., phase[0]:: self.options.stride, phase[1]:: self.options.stride] = True
        masked = replace_random_neighbour(x, mask, self.options.radius, gen)
        return masked.numpy().reshape(image.shape), mask.numpy().reshape(image.shape)

    def evaluate(self, fn: Denoiser) -> tuple[float, list[list[np.ndarray]]]:
        """Score of ``fn`` applied after the committed chain, and the new masked outputs."""
        new = [[np.asarray(fn(x), np.float32) for x in row] for row in self.states]
        total, count = 0.0, 0
        for outs, hidden in zip(new, self.hidden, strict=True):
            for out, img, hid in zip(outs, self.images, hidden, strict=True):
                diff = out[hid].astype(np.float64) - img[hid]
                total, count = total + float(diff @ diff), count + int(hid.sum())
        return total / count, new

    def commit(self, states: list[list[np.ndarray]]) -> None:
        """Make ``states`` (from :meth:`evaluate`) the chain that the next stage follows."""
        self.states = states

    def push(self, fn: Denoiser) -> float:
        """Append ``fn`` to the chain and return its score."""
        score, states = self.evaluate(fn)
        self.commit(states)
        return score


def gt_free_errors(images: Sequence[np.ndarray], stages: Sequence[Denoiser],
                   options: GTFreeOptions | None = None) -> list[float]:
    """GT-free score of each prefix of the chain ``stages`` (see :class:`SelfSupervisedError`)."""
    tracker = SelfSupervisedError(images, options)
    return [tracker.push(fn) for fn in stages]
