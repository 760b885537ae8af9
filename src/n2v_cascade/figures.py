"""Side-by-side comparison figures (PNG) with an optional zoomed inset row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _zoom_box(shape: Sequence[int], frac: float = 0.25) -> tuple[slice, slice]:
    """A central box covering ``frac`` of each side: the default zoom region."""
    h, w = shape[-2:]
    bh, bw = max(8, int(h * frac)), max(8, int(w * frac))
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    return slice(y0, y0 + bh), slice(x0, x0 + bw)


def comparison_figure(
    path: str | Path, panels: Sequence[tuple[str, np.ndarray]], *,
    vrange: tuple[float, float] | None = None, zoom: bool = True, overwrite: bool = False,
    cmap: str = "gray",
) -> Path:
    """Write a PNG with one column per (title, 2-D image) and a zoomed row below.

    All panels share one grey scale (``vrange``, default: the 1st-99th percentile of the
    first panel) so that differences in noise are visible, not hidden by rescaling.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .io import atomic_path

    images = [np.asarray(img if img.ndim == 2 else img[0], np.float32) for _, img in panels]
    if vrange is None:
        lo, hi = np.percentile(images[-1], [0.5, 99.5])
        vrange = (float(lo), float(hi))
    rows = 2 if zoom else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(3.2 * len(panels), 3.3 * rows),
                             squeeze=False)
    box = _zoom_box(images[0].shape)
    for col, ((title, _), img) in enumerate(zip(panels, images, strict=True)):
        ax = axes[0, col]
        ax.imshow(img, cmap=cmap, vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if zoom:
            ax.add_patch(Rectangle((box[1].start, box[0].start), box[1].stop - box[1].start,
                                   box[0].stop - box[0].start, fill=False, ec="yellow", lw=1))
            axes[1, col].imshow(img[box], cmap=cmap, vmin=vrange[0], vmax=vrange[1],
                                interpolation="nearest")
            axes[1, col].axis("off")
    fig.tight_layout()
    with atomic_path(Path(path), overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
