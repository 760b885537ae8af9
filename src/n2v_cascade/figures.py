"""Side-by-side comparison figures (PNG) with an optional zoomed inset row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _zoom_box(image: np.ndarray, frac: float = 0.25) -> tuple[slice, slice]:
    """A box covering ``frac`` of each side, centred on the most structured region.

    The box with the highest local variance of the (lightly smoothed) image wins, so the
    zoom shows edges and texture rather than flat background; ties go to the first.
    """
    from scipy import ndimage

    h, w = image.shape[-2:]
    bh, bw = min(h, max(8, int(h * frac))), min(w, max(8, int(w * frac)))
    smooth = ndimage.gaussian_filter(np.asarray(image, np.float64), 1.0)
    mean = ndimage.uniform_filter(smooth, (bh, bw), mode="nearest")
    var = ndimage.uniform_filter(smooth**2, (bh, bw), mode="nearest") - mean**2
    # uniform_filter centres a window of even size at index (size // 2) from its start
    valid = var[bh // 2: h - (bh - 1) // 2, bw // 2: w - (bw - 1) // 2]
    y0, x0 = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return slice(int(y0), int(y0) + bh), slice(int(x0), int(x0) + bw)


def comparison_figure(
    path: str | Path, panels: Sequence[tuple[str, np.ndarray]], *,
    vrange: tuple[float, float] | None = None, zoom: bool = True, overwrite: bool = False,
    cmap: str = "gray", box: tuple[slice, slice] | None = None,
) -> Path:
    """Write a PNG with one column per (title, 2-D image) and a zoomed row below.

    All panels share one grey scale (``vrange``, default: the 0.5-99.5th percentile of
    the last panel, usually the clean reference) so that differences in noise are
    visible, not hidden by rescaling. The zoom box (``box``, default: the most structured
    region of the last panel, see :func:`_zoom_box`) is outlined and enlarged below.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .axes import layout, to_samples
    from .safe_write import atomic_path

    # a stack shows its first image
    images = [np.asarray(to_samples(img, layout(img.shape))[0], np.float32)
              for _, img in panels]
    if vrange is None:
        lo, hi = np.percentile(images[-1], [0.5, 99.5])
        vrange = (float(lo), float(hi))
    rows = 2 if zoom else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(3.2 * len(panels), 3.3 * rows),
                             squeeze=False)
    box = box if box is not None else _zoom_box(images[-1])
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
