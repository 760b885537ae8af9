"""Figures of :mod:`benchmarks.nd`: an XY slice and an XZ view of 3-D stacks side by side.

The XZ view is drawn with the physical aspect (Z step over X pixel size), so a sphere
looks round; every panel of a figure shares one grey scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _brightest(vol: np.ndarray) -> tuple[int, int]:
    """Z and Y of the brightest (smoothed) region: where the views cut."""
    from scipy.ndimage import uniform_filter

    z, y, _ = np.unravel_index(np.argmax(uniform_filter(vol.astype(np.float32), 9)), vol.shape)
    return int(z), int(y)


def orthoviews(panels: dict[str, np.ndarray], um: tuple[float, float, float], path: Path,
               title: str, cut: tuple[int, int] | None = None, width: float = 3.2,
               scale: str | None = None) -> Path:
    """One column per panel: the XY slice at ``cut[0]`` (top) and the XZ view at ``cut[1]``
    (default: through the brightest region of the first panel); grey scale from the
    percentiles of panel ``scale`` (default the first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(panels.values()))
    z, y = cut if cut is not None else _brightest(first)
    lo, hi = np.percentile(panels[scale] if scale else first, (0.5, 99.8))
    zs, ys, xs = first.shape
    aspect = um[0] / um[2]
    ratio = (zs * aspect) / ys
    fig, axes = plt.subplots(2, len(panels), figsize=(width * len(panels), width * (1 + ratio)),
                             gridspec_kw={"height_ratios": [1, ratio]}, squeeze=False)
    for col, (name, vol) in enumerate(panels.items()):
        top, bottom = axes[0, col], axes[1, col]
        top.imshow(vol[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        top.axhline(y, color="y", lw=0.6, alpha=0.6)
        top.set_title(f"{name}\nXY, z = {z}", fontsize=9)
        bottom.imshow(vol[:, y, :], cmap="gray", vmin=lo, vmax=hi, aspect=aspect,
                      interpolation="nearest")
        bottom.set_title(f"XZ, y = {y}", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lls_figure(noisy: np.ndarray, results: dict[str, np.ndarray],
               um: tuple[float, float, float], path: Path) -> Path:
    """Noisy raw lattice light-sheet stack and its denoised versions."""
    title = (f"lattice light-sheet RBC stack (raw, not deskewed), ZYX {noisy.shape}, "
             f"{um[0]} um z / {um[2]} um xy; XZ drawn at that aspect")
    return orthoviews({"noisy (real noise)": noisy, **results}, um, path, title, width=2.8)


def nucleus_figure(noisy: np.ndarray, two_d: np.ndarray, three_d: np.ndarray,
                   clean: np.ndarray, um: tuple[float, float, float], path: Path) -> Path:
    """Noisy / 2-D n2v / 3-D n2v / clean of the nucleus crop."""
    title = ("cells3d nucleus crop, synthetic Poisson-Gaussian noise: n2v slice by slice "
             "(2-D) and on the volume (3-D)")
    return orthoviews({"noisy": noisy, "n2v 2-D": two_d, "n2v 3-D": three_d, "clean": clean},
                      um, path, title, cut=_brightest(clean), width=2.4, scale="clean")
