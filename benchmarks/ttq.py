"""Time to quality: PSNR against training seconds, from snapshots of one run per variant.

The weights are copied at fixed training times (``MARKS``) during a single run (see
:class:`benchmarks.training.StepClock`), then each snapshot denoises the data set. The
time axis is the summed step time (sampling, masking, forward, backward, Adam) in CPU
seconds per thread, which excludes the evaluations. After the last snapshot the final
model is also evaluated with 8-fold test-time augmentation (``tta=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from benchmarks.datasets import Dataset
from benchmarks.quality import score
from benchmarks.training import RECIPES, denoise_all, train_budget

MARKS = (15, 30, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200)
# Reference points measured on this machine (issue 5), BSD68 test001-004, sigma 25.
REFERENCES = {
    "CAREamics 0.3.5 N2V (10 min)": (600.0, 25.0),
    "prototype prob. blind-spot, posterior (7 min)": (420.0, 28.37),
    "prototype prob. blind-spot, prior mean (7 min)": (420.0, 26.72),
}


def run(ds: Dataset, budgets: dict[str, float], log: Callable[[str], None],
        done: dict | None = None, save: Callable[[dict], None] | None = None) -> dict:
    """One run per variant in ``budgets`` (variant key -> seconds); PSNR at each mark.

    ``done`` holds finished series of an earlier run (kept when the budget matches);
    ``save`` is called with the partial result after every series.
    """
    series: dict = {}
    result = {"dataset": ds.name, "description": ds.description, "series": series,
              "noisy_psnr": score(ds, ds.noisy)["psnr"]}
    for key, budget in budgets.items():
        if done and key in done and done[key]["budget_s"] == budget:
            log(f"  ttq {key}: kept from the previous (resumed) run")
            series[key] = done[key]
            continue
        recipe = RECIPES[key]
        marks = [m for m in MARKS if m < budget] + [budget]
        model, clock, wall = train_budget(recipe, ds.noisy, ds.noise_model, budget, marks=marks)
        points = []
        for seconds, steps, state in clock.snapshots:
            model.network.load_state_dict(state)
            out, _ = denoise_all(model, ds.noisy)
            point = {"train_s": seconds, "steps": steps, "psnr": score(ds, out)["psnr"]}
            if recipe.posterior:
                out, _ = denoise_all(model, ds.noisy, posterior=True)
                point["psnr_posterior"] = score(ds, out)["psnr"]
            points.append(point)
            extra = f", posterior {point['psnr_posterior']:.2f}" if recipe.posterior else ""
            log(f"  ttq {key} {seconds:.0f} s ({steps} steps): {point['psnr']:.2f} dB{extra}")
        out, sec = denoise_all(model, ds.noisy, posterior=recipe.posterior, tta=True)
        final_tta = score(ds, out)["psnr"]
        log(f"  ttq {key} final with 8-fold TTA: {final_tta:.2f} dB ({sec:.0f} s to predict)")
        series[key] = {"label": recipe.label, "budget_s": budget, "wall_s": wall,
                       "train_wall_s": clock.wall_seconds,
                       "posterior": recipe.posterior, "points": points,
                       "final_tta_psnr": final_tta, "final_tta_predict_s": sec}
        if save is not None:
            save(result)
    return result


def plot(result: dict, path: Path, baselines: dict[str, float] | None = None) -> Path:
    """PSNR-vs-seconds PNG with the baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for s in result["series"].values():
        x = [p["train_s"] for p in s["points"]]
        ax.plot(x, [p["psnr"] for p in s["points"]], "o-",
                label=s["label"] + (" (prior mean)" if s["posterior"] else ""))
        if s["posterior"]:
            ax.plot(x, [p["psnr_posterior"] for p in s["points"]], "s-",
                    label=s["label"] + " (posterior mean)")
    ax.axhline(result["noisy_psnr"], color="grey", ls=":", label="noisy input")
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color=f"C{5 + i}", ls="--", lw=1, label=name)
    for name, (sec, value) in REFERENCES.items():
        ax.plot([sec], [value], "x", ms=9, mew=2, label=f"ref: {name}")
    ax.set_xscale("log")
    marks = sorted({p["train_s"] for s in result["series"].values() for p in s["points"]}
                   | {sec for sec, _ in REFERENCES.values()})
    ax.set_xticks([round(m) for m in marks], [f"{m:.0f}" for m in marks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training seconds (CPU seconds per thread of the training steps)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"Time to quality: {result['description']}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
