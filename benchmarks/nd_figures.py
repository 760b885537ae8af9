"""Figures and tables of :mod:`benchmarks.nd`.

Figures: an XY slice and an XZ view of 3-D stacks side by side.

The XZ view is drawn with the physical aspect (Z step over X pixel size), so a sphere
looks round; every panel of a figure shares one grey scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _brightest(vol: np.ndarray) -> tuple[int, int]:
    """Z and Y of the brightest (smoothed) region of the central half: where the views cut."""
    from scipy.ndimage import uniform_filter

    lo = [n // 4 for n in vol.shape[:2]]
    core = vol[lo[0]: vol.shape[0] - lo[0], lo[1]: vol.shape[1] - lo[1]]
    z, y, _ = np.unravel_index(np.argmax(uniform_filter(core.astype(np.float32), 9)),
                               core.shape)
    return int(z) + lo[0], int(y) + lo[1]


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
    heights = [ys / xs, zs * aspect / xs]  # panel heights per unit width
    fig, axes = plt.subplots(2, len(panels), squeeze=False,
                             figsize=(width * len(panels), width * sum(heights) + 1.0),
                             gridspec_kw={"height_ratios": heights})
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


# --- Markdown tables from the JSON lines ------------------------------------------------

def report_quality(rows: list[dict]) -> str:
    parts = []
    for key in dict.fromkeys(r["stack"] for r in rows if "stack" in r):
        got = {(r["method"], r["dims"]): r for r in rows if r.get("stack") == key}
        noisy = got[("noisy", 0)]
        parts += [f"\n{key} (ZYX {'x'.join(map(str, noisy['shape']))}, {noisy['photons']:g} "
                  f"photons, read sigma {noisy['read_sigma']:g}): noisy {noisy['psnr']:.2f} dB / "
                  f"SSIM {noisy['ssim']:.3f}\n",
                  "| method | 2-D PSNR / SSIM | 3-D PSNR / SSIM | 3-D - 2-D | steps 2-D / 3-D "
                  "| predict s 2-D / 3-D |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for method in dict.fromkeys(m for m, d in got if d):
            a, b = got.get((method, 2)), got.get((method, 3))
            if a is None or b is None:
                continue
            share = [f"{d}-D {r['posterior_share']:.0%}" for d, r in ((2, a), (3, b))
                     if method.startswith("probabilistic-") and "posterior_share" in r]
            post = f" (posterior: {', '.join(share)})" if share else ""
            parts.append(f"| {method}{post} | {a['psnr']:.2f} / {a['ssim']:.3f} | "
                         f"{b['psnr']:.2f} / {b['ssim']:.3f} | {b['psnr'] - a['psnr']:+.2f} dB / "
                         f"{b['ssim'] - a['ssim']:+.3f} | {a['steps']} / {b['steps']} | "
                         f"{a['predict_s']:.1f} / {b['predict_s']:.1f} |")
    return "\n".join(parts)


def report_curve(rows: list[dict]) -> str:
    # snapshots land just past their mark (81 s for 80): rows meet at the mark
    got = {(r["stack"], r["method"], r.get("mark", round(r["train_s"], -1)), r["dims"]): r
           for r in rows if "train_s" in r}
    lines = ["| stack | method | train CPU s | 2-D PSNR / SSIM (steps) | 3-D PSNR / SSIM (steps) "
             "| 3-D - 2-D |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (key, method, sec, dims), b in got.items():
        a = got.get((key, method, sec, 2))
        if dims == 3 and a is not None:
            lines.append(f"| {key} | {method} | {sec} | {a['psnr']:.2f} / {a['ssim']:.3f} "
                         f"({a['steps']}) | {b['psnr']:.2f} / {b['ssim']:.3f} ({b['steps']}) | "
                         f"{b['psnr'] - a['psnr']:+.2f} dB |")
    return "\n".join(lines)


def report_lls(rows: list[dict]) -> str:
    lines = ["| model | budget (CPU s) | steps | GT-free score (SE) | predict s |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['method']} {r['dims']}-D | {r['budget_s']:g} | {r['steps']} | "
              f"{r['gtfree']:.3f} ({r['gtfree_se']:.3f}) | {r['predict_s']:.1f} |"
              for r in rows if "gtfree" in r]
    lines += [f"\n{r['method']}: 3-D - 2-D = {r['diff_3d_minus_2d']:+.4f} (SE {r['se']:.4f}): "
              f"{'significant' if r['significant'] else 'not significant'} (|diff| > 2 SE)"
              for r in rows if r.get("kind") == "compare"]
    return "\n".join(lines)
