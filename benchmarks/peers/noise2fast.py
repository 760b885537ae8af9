"""Noise2Fast (Lequyer, Philip, Sharma, Hsu & Pelletier, Nature Machine Intelligence 2022,
"A fast blind zero-shot denoiser"), re-implemented from the paper and the settings of
the authors' release (learning rates, patience, failure check).

* The image is min-max scaled to 0..1.
* Chequerboard down-sampling gives four half-size images: the pixels with ``i + j`` even,
  and those with ``i + j`` odd, each squeezed along the rows (``H/2 x W``: every column
  keeps its one pixel of the colour from each row pair) and, likewise, along the columns
  (``H x W/2``). The two colours of one squeeze see the same structure with independent
  noise, so the training set is four pairs: each image mapped to its partner.
* The network: four blocks of two 3x3 convolutions with 64 channels and ReLU, then a 1x1
  convolution and a sigmoid; binary cross-entropy against the partner image; Adam 1e-3;
  one randomly chosen pair per step.
* Validation: after every step the network predicts the full-size noisy image, and the
  mean squared difference to the noisy image is the score. Training stops when it has
  not improved for 100 steps; the output is the mean of the predictions of the last 100
  steps, scaled back. If that mean is flat (hardly any pixel above its mean), training
  restarts once with learning rate 5e-6.

Deviations: a time budget, when given, also stops training (the budget covers the
per-step validation passes, which the method needs for its stopping rule); the flat
output retry only runs while budget is left, and flatness is judged on the min-max scaled
output times 255 (the published check counts in the image's own, 8-bit, units). Odd sizes
lose the last row/column for the training images only.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers.common import (
    Budget,
    PeerResult,
    check_image,
    fast,
    seeded,
    to_tensor,
)

LEARNING_RATE = 1e-3
RETRY_LEARNING_RATE = 5e-6
PATIENCE = 100
WIDTH = 64
FLAT_PIXELS = 25  # at most this many pixels above the mean (8-bit units): a flat output


class Net(nn.Module):
    """Eight 3x3 convolutions (ReLU) and a 1x1 convolution with a sigmoid."""

    def __init__(self, width: int = WIDTH, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2 * blocks):
            layers += [nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers, nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def chequerboard_pairs(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The four (input, target) pairs of chequerboard down-sampling."""
    h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
    x = img[:h, :w]
    top, bottom = x[0::2], x[1::2]  # row pairs, (H/2, W)
    even_cols = (np.arange(w) % 2 == 0)[None, :]
    rows_even = np.where(even_cols, top, bottom)  # i + j even
    rows_odd = np.where(even_cols, bottom, top)
    left, right = x[:, 0::2], x[:, 1::2]  # column pairs, (H, W/2)
    even_rows = (np.arange(h) % 2 == 0)[:, None]
    cols_even = np.where(even_rows, left, right)
    cols_odd = np.where(even_rows, right, left)
    return [(rows_even, rows_odd), (rows_odd, rows_even),
            (cols_odd, cols_even), (cols_even, cols_odd)]


def _is_flat(out: np.ndarray) -> bool:
    """The failure check: almost no pixel rounds above the mean (0..255 scale)."""
    vals = out[1:-1, 1:-1] * 255.0
    return int(np.sum(np.round(vals - vals.mean()) > 0)) <= FLAT_PIXELS


def _train(img: np.ndarray, lr: float, budget: Budget, rng: np.random.Generator,
           patience: int, max_steps: int | None) -> tuple[np.ndarray, int, bool]:
    """One training run; the mean of the last ``patience`` predictions, steps, converged."""
    pairs = [(to_tensor(a), to_tensor(b)) for a, b in chequerboard_pairs(img)]
    full = to_tensor(img)
    net = fast(Net())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    recent: deque[np.ndarray] = deque(maxlen=patience)
    best, since, steps = np.inf, 0, 0
    while since < patience and not (steps and budget.spent()) and steps != max_steps:
        inp, target = pairs[int(rng.integers(len(pairs)))]
        loss = F.binary_cross_entropy(net(inp), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        with torch.no_grad():
            pred = net(full)[0, 0].numpy()
        recent.append(pred)
        score = float(np.mean((pred - img) ** 2))
        if score < best:
            best, since = score, 0
        else:
            since += 1
    return np.mean(np.stack(recent), axis=0), steps, since >= patience


def fit(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
        data_range: float | None = None, patience: int = PATIENCE,
        max_steps: int | None = None) -> PeerResult:
    """Train Noise2Fast on ``noisy`` alone and denoise it; see the module docstring.

    ``data_range`` is accepted for the common interface; the method scales by min/max.
    ``max_steps`` caps each training run (for tests; the method itself has no cap).
    """
    del data_range
    img = check_image(noisy)
    lo, span = float(img.min()), float(img.max() - img.min()) or 1.0
    x = (img - lo) / span
    budget = Budget(seconds)
    rng = np.random.default_rng(seed)
    with seeded(seed):
        out, steps, converged = _train(x, LEARNING_RATE, budget, rng, patience, max_steps)
        retried = False
        if _is_flat(out) and not budget.spent():
            retried = True
            out, more, converged = _train(x, RETRY_LEARNING_RATE, budget, rng, patience,
                                          max_steps)
            steps += more
    # the output is the running mean of predictions made inside training: no extra pass
    return PeerResult((out * span + lo).astype(np.float32), steps, budget.used, 0.0,
                      finished=converged, extra={"retried_low_lr": retried})


def denoise(noisy: np.ndarray, *, seconds: float | None = None, seed: int = 0,
            data_range: float | None = None) -> np.ndarray:
    """Noise2Fast output for one 2-D image, in the image's own intensity scale."""
    return fit(noisy, seconds=seconds, seed=seed, data_range=data_range).output
