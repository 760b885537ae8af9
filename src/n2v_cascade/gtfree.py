"""Ground-truth-free error of a chain of denoisers (Noise2Self, Batson & Royer 2019).

Users never have clean images; this score tells them which cascade stage to keep. It
hides pixels of the original noisy image, runs the chain on the masked image, and
compares the output with the hidden noisy values: for pixel-wise independent zero-mean
noise its expectation is the true MSE plus the noise variance.

Each score carries its squared errors summed over square blocks of the image
(:class:`GTFreeScore`), which give its standard error and that of the difference between
two scores on the same hidden pixels (:func:`compare`). Blocks, not pixels, are the
units because a denoiser's errors at neighbouring pixels are correlated. Two scores whose
difference is within :data:`SIGNIFICANT` standard errors are reported as
indistinguishable rather than ranked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .masking import replace_random_neighbour

Denoiser = Callable[[np.ndarray], np.ndarray]
BLOCK = 32  # side (pixels) of the blocks whose summed squared errors give standard errors
SIGNIFICANT = 2.0  # a difference within this many standard errors does not rank two scores


class GTFreeScore(float):
    """A GT-free score (a float) with its squared errors summed per block of the images.

    ``sums[b]`` / ``counts[b]``: squared error summed over / number of the hidden pixels
    of block ``b`` (all masks together). The score is ``sums.sum() / counts.sum()``.
    """

    sums: np.ndarray
    counts: np.ndarray

    def __new__(cls, sums: np.ndarray, counts: np.ndarray) -> GTFreeScore:
        score = super().__new__(cls, float(sums.sum() / counts.sum()))
        score.sums, score.counts = sums, counts
        return score

    @property
    def se(self) -> float:
        """Standard error of the score over blocks (NaN with fewer than two blocks)."""
        return _ratio_se(self.sums, self.counts)


def _ratio_se(sums: np.ndarray, counts: np.ndarray) -> float:
    """Standard error of ``sums.sum() / counts.sum()`` from its per-block terms."""
    used = counts > 0
    sums, counts = sums[used], counts[used].astype(np.float64)
    if len(counts) < 2:
        return float("nan")
    mean = sums.sum() / counts.sum()
    resid = sums - mean * counts
    return float(np.sqrt(len(counts) / (len(counts) - 1) * (resid @ resid)) / counts.sum())


def compare(a: float, b: float) -> tuple[float, float]:
    """``(a - b, standard error of that difference)`` for two scores on the same masks.

    The difference is paired (block by block), so the noise both scores share cancels.
    Plain floats (no blocks) give a standard error of 0.
    """
    if not (isinstance(a, GTFreeScore) and isinstance(b, GTFreeScore)):
        return float(a) - float(b), 0.0
    if a.counts.shape != b.counts.shape or not np.array_equal(a.counts, b.counts):
        raise InputError("GT-free scores: only scores on the same hidden pixels compare")
    return float(a) - float(b), _ratio_se(a.sums - b.sums, a.counts)


def indistinguishable(a: float, b: float) -> bool:
    """True when ``a`` and ``b`` differ by at most :data:`SIGNIFICANT` standard errors."""
    diff, se = compare(a, b)
    return abs(diff) <= SIGNIFICANT * se


def rank(scores: Sequence[float]) -> tuple[int, list[tuple[float, float] | None], list[int]]:
    """Index of the lowest score, each score's (difference, standard error) to it (None for
    itself), and the indices of the scores indistinguishable from it."""
    best = int(np.argmin(scores))
    versus = [None if i == best else compare(s, scores[best]) for i, s in enumerate(scores)]
    ties = [i for i, pair in enumerate(versus)
            if pair is not None and indistinguishable(scores[i], scores[best])]
    return best, versus, ties



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
        self.masked = self.states  # the masked noisy images, the chain's start
        # the block of every hidden pixel, numbered across images (the same for every stage)
        grids, self.n_blocks = [], 0
        for im in self.images:
            grid = _block_grid(im.shape)
            grids.append(self.n_blocks + grid.ravel())
            self.n_blocks += int(grid.max()) + 1
        self.blocks = [[grid[np.flatnonzero(hid)] for grid, hid in zip(grids, row, strict=True)]
                       for row in self.hidden]
        self.counts = sum(np.bincount(ids, minlength=self.n_blocks)
                          for row in self.blocks for ids in row)

    def _mask(self, image: np.ndarray, phase: tuple[int, int], gen: torch.Generator):
        x = torch.from_numpy(image.reshape(-1, 1, *image.shape[-2:]).copy())
        mask = torch.zeros(x.shape, dtype=torch.bool)
        mask[..., phase[0]:: self.options.stride, phase[1]:: self.options.stride] = True
        masked = replace_random_neighbour(x, mask, self.options.radius, gen)
        return masked.numpy().reshape(image.shape), mask.numpy().reshape(image.shape)

    def evaluate(self, fn: Denoiser, from_noisy: bool = False
                 ) -> tuple[GTFreeScore, list[list[np.ndarray]]]:
        """Score of ``fn`` applied after the committed chain (with ``from_noisy``: to the
        masked noisy images, as a stage that denoises the cascade's input), and the new
        masked outputs."""
        start = self.masked if from_noisy else self.states
        new = [[np.asarray(fn(x), np.float32) for x in row] for row in start]
        sums = np.zeros(self.n_blocks)
        for outs, hidden, blocks in zip(new, self.hidden, self.blocks, strict=True):
            for out, img, hid, ids in zip(outs, self.images, hidden, blocks, strict=True):
                diff = out[hid].astype(np.float64) - img[hid]
                sums += np.bincount(ids, weights=diff * diff, minlength=self.n_blocks)
        return GTFreeScore(sums, self.counts), new

    def commit(self, states: list[list[np.ndarray]]) -> None:
        """Make ``states`` (from :meth:`evaluate`) the chain that the next stage follows."""
        self.states = states

    def push(self, fn: Denoiser) -> GTFreeScore:
        """Append ``fn`` to the chain and return its score."""
        score, states = self.evaluate(fn)
        self.commit(states)
        return score


def _block_grid(shape: tuple[int, ...]) -> np.ndarray:
    """Block number of every pixel of an image (YX) or of every YX plane of a stack or
    volume (..., Y, X): BLOCK x BLOCK squares per plane."""
    y = np.arange(shape[-2]) // BLOCK
    x = np.arange(shape[-1]) // BLOCK
    grid = y[:, None] * (x[-1] + 1) + x[None, :]
    planes = int(np.prod(shape[:-2], dtype=np.int64))
    if len(shape) > 2:
        grid = grid[None] + (np.arange(planes) * (grid.max() + 1))[:, None, None]
    return grid.reshape(shape)


def gt_free_errors(images: Sequence[np.ndarray], stages: Sequence[Denoiser],
                   options: GTFreeOptions | None = None) -> list[GTFreeScore]:
    """GT-free score of each prefix of the chain ``stages`` (see :class:`SelfSupervisedError`)."""
    tracker = SelfSupervisedError(images, options)
    return [tracker.push(fn) for fn in stages]
