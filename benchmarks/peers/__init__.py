"""Peer methods for the benchmark, each an independent re-implementation of a published
zero-shot denoiser (one image at a time, CPU), plus CAREamics N2V run in its own venv.

Every per-image peer module has ``fit(noisy, *, seconds, seed, data_range, ...) ->
PeerResult`` and ``denoise(...) -> np.ndarray`` for one 2-D image in its own intensity
scale. ``seconds`` is a CPU-time budget (per torch thread) that stops training early;
``None`` runs the published schedule. Nothing in ``src/n2v_cascade`` imports this package.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.peers import fm2s, noise2fast, zsn2n
from benchmarks.peers.common import PeerResult

# key: (row label, fit function)
PER_IMAGE: dict[str, tuple[str, Callable[..., PeerResult]]] = {
    "fm2s": ("FM2S (Liu et al. 2024)", fm2s.fit),
    "noise2fast": ("Noise2Fast (Lequyer et al. 2022)", noise2fast.fit),
    "zs-n2n": ("ZS-N2N (Mansour & Heckel 2023)", zsn2n.fit),
}
CAREAMICS_KEY = "careamics-n2v"
ALL = (*PER_IMAGE, CAREAMICS_KEY)

__all__ = ["ALL", "CAREAMICS_KEY", "PER_IMAGE", "PeerResult"]
