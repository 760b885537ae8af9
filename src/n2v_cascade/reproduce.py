"""Reproduce the paper's experiments (Tables I-III, Fig. 2) on clean images with synthetic noise.

For each noise model every variant runs for passes 1-3 and every ordered pair of
different variants runs as a two-stage cascade. All runs form a prefix tree: the pair
``a -> b`` and the 2nd pass of ``a`` reuse the 1st-pass model of ``a`` (a cascade's first
stage *is* that model: same config, seed and input), and the 3rd pass reuses the 2nd.

Images are converted to grayscale and kept in their own intensity scale (the noise spec
``gaussian:25`` is in 0-255 units for 8-bit images); PSNR/SSIM use the data range of the
clean images (255 for 8-bit data). Metrics are means over the images (PSNR in dB).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .axes import layout, to_samples
from .cascade import digest, image_names, jsonable, score
from .errors import InputError
from .gtfree import GTFreeOptions, SelfSupervisedError
from .io import read_images, write_image
from .methods import method_class
from .safe_write import atomic_write_text, check_output_folder
from .stages import estimate_fn, merge_values, run_stage, stage_config

PAPER_VARIANTS = ("n2v", "structured", "blindspot", "probabilistic")
DEFAULT_NOISES = ("gaussian:25", "poisson:30")
# quick: short first and retraining stages that still improve on their input at width 16
# (docs/DECISIONS.md); paper: the paper's 30 / 10 epochs.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"base": {"patch_size": 64, "batch_size": 8, "steps_per_epoch": 12,
                       "network": {"depth": 3, "width": 16, "growth": 2.0}},
              "epochs": 10, "retrain_epochs": 6},
    "paper": {"base": {"patch_size": 64, "batch_size": 8,
                       "network": {"depth": 3, "width": 32, "growth": 2.0}},
              "epochs": 30, "retrain_epochs": 10},
}
ORDINAL = {1: "1st", 2: "2nd", 3: "3rd"}
# The paper's PSNRs (dB; its data and noise level are not specified), for reading trends.
PAPER_PSNR = {("structured",): 35.95, ("structured",) * 2: 35.32, ("structured",) * 3: 35.51,
              ("probabilistic",): 36.76, ("probabilistic",) * 2: 37.55,
              ("probabilistic",) * 3: 38.27, ("structured", "probabilistic"): 36.78,
              ("probabilistic", "structured"): 37.43}
COLUMNS = ["run", "mse", "psnr", "ssim", "gt_free", "train_seconds", "paper_psnr"]


def run_label(chain: Sequence[str]) -> str:
    """``Probabilistic N2V (2nd)`` for passes, ``Structured -> ProbN2V`` for cascades."""
    if len(set(chain)) == 1:
        return f"{method_class(chain[0]).label} ({ORDINAL.get(len(chain), f'{len(chain)}th')})"
    return " → ".join(method_class(v).short_label for v in chain)


def run_chains(variants: Sequence[str]) -> list[tuple[str, ...]]:
    """Every run, parents before children: passes 1-3 and ordered pairs of variants."""
    firsts = [(v,) for v in variants]
    seconds = [(a, b) for a in variants for b in variants]
    return firsts + seconds + [(v, v, v) for v in variants]


def load_clean(paths: object, crop: int | None) -> tuple[list[str], list[np.ndarray]]:
    """Clean images as 2-D float arrays (stacks split into slices), centre-cropped."""
    items = paths if isinstance(paths, str | Path) else list(paths)  # type: ignore[arg-type]
    named = []
    for path, arr in read_images(items):
        slices = list(to_samples(arr, layout(arr.shape, source=str(path))))
        for i, sl in enumerate(slices):
            name = str(path) if len(slices) == 1 else f"{Path(path).stem}_s{i}.tif"
            named.append((name, centre_crop(sl, crop)))
    return image_names(named), [a for _, a in named]


def centre_crop(image: np.ndarray, crop: int | None) -> np.ndarray:
    if not crop:
        return image
    h, w = image.shape
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return np.ascontiguousarray(image[y0: y0 + crop, x0: x0 + crop])


def _budget(budget: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(budget, Mapping):
        return {"base": {}, "epochs": None, "retrain_epochs": None, **budget}
    if budget not in BUDGETS:
        raise InputError(f"--budget: unknown budget {budget!r} (choose from "
                         f"{', '.join(BUDGETS)})")
    return BUDGETS[budget]


def reproduce(clean: object, output: str | Path, *, noises: Sequence[str] = DEFAULT_NOISES,
              budget: str | Mapping[str, Any] = "quick",
              variants: Sequence[str] = PAPER_VARIANTS, crop: int | None = 128,
              seed: int = 0, resume: bool = False, overwrite: bool = False,
              progress: bool = True, gt_free: GTFreeOptions | None = None,
              device: str | None = None) -> dict[str, Any]:
    """Run every pass and pair per noise model; write tables, figure and summary.

    ``budget`` is ``quick``, ``paper`` (30 / 10 epochs) or a mapping with ``base``,
    ``epochs`` and ``retrain_epochs``. The noise realisation is frozen: image ``i`` gets
    seed ``seed + i``. ``gt_free`` sets the masks of the GT-free score (default: 4 masks,
    seed ``seed``); ``device`` is where the networks run (None: the best available).
    Returns the summary (also in ``output/reproduce.json``).
    """
    from .noise import add_noise, parse_noise_spec
    from .runtime import resolve_device

    t0 = time.perf_counter()
    resolve_device(device)  # an unusable device fails before any work
    plan = _budget(budget)
    plan = {**plan, "base": merge_values(plan["base"], {"seed": seed})}
    variants = list(dict.fromkeys(variants))
    for v in variants:
        stage_config(v, 0, plan["base"])  # unknown variants fail before any work
    specs = [parse_noise_spec(n) for n in noises]
    names, cleans = load_clean(clean, crop)
    data_range = max(_range(c) for c in cleans)
    out = Path(output)
    settings = {"budget": budget if isinstance(budget, str) else "custom", "plan": plan,
                "crop": crop, "seed": seed, "images": names,
                "sha1": [digest(c) for c in cleans], "data_range": data_range}
    _prepare(out, settings, resume, overwrite)
    for name, img in zip(names, cleans, strict=True):
        write_image(out / "clean" / f"{name}.tif", img, overwrite=True)
    summary: dict[str, Any] = {"settings": settings, "variants": variants, "noise": {}}
    for spec in specs:
        tag = str(spec).replace(":", "-").replace(",", "-")
        noisy = [add_noise(c, spec, seed=seed + i) for i, c in enumerate(cleans)]
        for name, img in zip(names, noisy, strict=True):
            write_image(out / tag / "noisy" / f"{name}.tif", img, overwrite=True)
        rows, outputs = _runs(noisy, cleans, names, out / tag, variants, plan, data_range,
                              gt_free or GTFreeOptions(seed=seed), resume, overwrite,
                              progress, str(spec), device)
        summary["noise"][str(spec)] = _report(out / tag, str(spec), rows, outputs, noisy,
                                              cleans, data_range, overwrite=True)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    _write_summary(out, summary)
    return summary


def _range(image: np.ndarray) -> float:
    from .metrics import default_data_range

    return default_data_range(image)


def _prepare(out: Path, settings: dict, resume: bool, overwrite: bool) -> None:
    check_output_folder(out, busy=out.is_dir() and any(out.iterdir()) and not (resume or overwrite),
                        hint="folder is not empty; use --resume to continue or --overwrite "
                             "to start over")
    record = out / "reproduce.json"
    if resume and record.is_file():
        try:
            old = json.loads(record.read_text()).get("settings", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise InputError(f"{record}: corrupt; use --overwrite to start over") from None
        if old.get("sha1") != settings["sha1"] or old.get("crop") != settings["crop"]:
            raise InputError(f"{out}: was run on other clean images or crops; use --overwrite")


def _runs(noisy, cleans, names, folder: Path, variants, plan, data_range, gt_free, resume,
          overwrite, progress, label, device=None
          ) -> tuple[list[dict], dict[tuple, list[np.ndarray]]]:
    """Train/denoise every chain of the prefix tree; one metrics row per run."""
    tracker = SelfSupervisedError(noisy, gt_free)
    cache: dict[tuple, tuple] = {(): (noisy, tracker.states, 0.0)}
    chains = run_chains(variants)
    rows = []
    for n, chain in enumerate(chains, 1):
        parent_out, parent_states, parent_secs = cache[chain[:-1]]
        cfg = stage_config(chain[-1], len(chain) - 1, plan["base"], epochs=plan["epochs"],
                           retrain_epochs=plan["retrain_epochs"])
        res = run_stage(parent_out, cfg, folder / "+".join(chain), names, resume=resume,
                        overwrite=overwrite, progress=False, reuse_outputs=True,
                        retrain=len(chain) > 1, device=device)
        tracker.commit(parent_states)
        gt, states = tracker.evaluate(estimate_fn(res.model))
        seconds = parent_secs + res.model.train_seconds
        cache[chain] = (res.outputs, states, seconds)
        metrics, _ = score(res.outputs, cleans, data_range)
        rows.append({"run": run_label(chain), **metrics, "gt_free": gt,
                     "train_seconds": round(seconds, 1), "paper_psnr": PAPER_PSNR.get(chain),
                     "chain": "+".join(chain), "stages": len(chain),
                     "reused": not res.trained})
        if progress:
            print(f"[{label}] {n}/{len(chains)} {rows[-1]['run']}: PSNR {metrics['psnr']:.2f} "
                  f"dB, GT-free {gt:.5g} ({'reused' if not res.trained else 'trained'}, "
                  f"{res.seconds:.1f} s)", flush=True)
    return rows, {tuple(k): v[0] for k, v in cache.items() if k}


def tables(rows: Sequence[dict]) -> dict[str, list[dict]]:
    """Table I (passes of Probabilistic N2V), II (the paper's four rows), III (all, by PSNR)."""
    by_chain = {r["chain"]: r for r in rows}
    t1 = [{"pass": ORDINAL[n], **by_chain[c]} for n in (1, 2, 3)
          if (c := "+".join(["probabilistic"] * n)) in by_chain]
    t2 = [by_chain[c] for c in ("structured+structured", "structured+probabilistic",
                                "probabilistic+probabilistic", "probabilistic+structured")
          if c in by_chain]
    t3 = sorted(rows, key=lambda r: r["psnr"])  # ascending, as the paper's Table III
    return {"table1": t1, "table2": t2, "table3": t3}


def spearman(rows: Sequence[dict]) -> dict[str, float | int | None]:
    """Spearman rank correlation between the GT-free score and the true MSE over runs."""
    from scipy.stats import spearmanr

    if len(rows) < 3:
        return {"rho": None, "p": None, "n": len(rows)}
    res = spearmanr([r["gt_free"] for r in rows], [r["mse"] for r in rows])
    return {"rho": float(res.statistic), "p": float(res.pvalue), "n": len(rows)}


TITLES = {"table1": "Table I: passes of Probabilistic N2V",
          "table2": "Table II: progressive retraining vs. second passes",
          "table3": "Table III: every run, sorted by PSNR (ascending, as in the paper)"}


def _report(folder: Path, label: str, rows, outputs, noisy, cleans, data_range,
            overwrite: bool) -> dict[str, Any]:
    """Write the three tables (md/csv/json), runs.json and the Fig. 2-style figure."""
    from .metrics import format_table, write_metrics

    noisy_metrics, _ = score(noisy, cleans, data_range)
    corr = spearman(rows)
    md = []
    for key, table in tables(rows).items():
        cols = (["pass"] if key == "table1" else []) + COLUMNS
        text = format_table(table, columns=cols) if table else "(variants not in this run)"
        md.append(f"### {TITLES[key]} ({label})\n\n{text}\n")
        atomic_write_text(folder / f"{key}.md", md[-1], overwrite=overwrite)
        if table:
            for suffix in (".csv", ".json"):
                write_metrics(folder / f"{key}{suffix}", [{c: r.get(c) for c in cols}
                                                          for r in table], overwrite=overwrite)
    result = {"noisy": noisy_metrics, "spearman_gt_free_vs_mse": corr, "runs": rows,
              "markdown": "\n".join(md)}
    atomic_write_text(folder / "runs.json", json.dumps(jsonable(result), indent=2) + "\n",
                      overwrite=overwrite)
    _figure(folder / "figure2.png", outputs, noisy, cleans, data_range, overwrite)
    return result


def _figure(path: Path, outputs: dict, noisy, cleans, data_range, overwrite: bool) -> None:
    """Noisy, the 1st passes of two variants, their two cascades, clean (first image)."""
    from .figures import comparison_figure
    from .metrics import psnr

    variants = list(dict.fromkeys(c[0] for c in outputs))
    pair = [v for v in ("structured", "probabilistic") if v in variants]
    pair = (pair + [v for v in variants if v not in pair])[:2]
    a, b = pair if len(pair) == 2 else (pair[0], None)
    chains = [(a,), (b,), (a, b), (b, a)] if b else [(a,) * n for n in (1, 2, 3)]
    clean = cleans[0]
    panels = [(f"noisy ({psnr(noisy[0], clean, data_range):.2f} dB)", noisy[0])]
    for chain in chains:
        img = outputs[tuple(chain)][0]
        panels.append((f"{run_label(chain)} ({psnr(img, clean, data_range):.2f} dB)", img))
    panels.append(("clean", clean))
    comparison_figure(path, panels, overwrite=overwrite)


def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    lines = ["# Reproduction of the paper's Tables I-III", "",
             f"Budget `{summary['settings']['budget']}`, images {summary['settings']['images']}"
             f" (crop {summary['settings']['crop']}), data range "
             f"{summary['settings']['data_range']:g}, total {summary['seconds']:.0f} s.", ""]
    for label, res in summary["noise"].items():
        corr = res["spearman_gt_free_vs_mse"]
        rho = "n/a" if corr["rho"] is None else f"{corr['rho']:.3f} (p = {corr['p']:.2g})"
        lines += [f"## Noise {label}", "", f"Noisy input: PSNR {res['noisy']['psnr']:.2f} dB, "
                  f"SSIM {res['noisy']['ssim']:.4f}. Spearman rank correlation of the GT-free "
                  f"score with the true MSE over {corr['n']} runs: {rho}.", "",
                  res["markdown"]]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n", overwrite=True)
    slim = {**summary, "noise": {k: {kk: vv for kk, vv in v.items() if kk != "markdown"}
                                 for k, v in summary["noise"].items()}}
    atomic_write_text(out / "reproduce.json", json.dumps(jsonable(slim), indent=2) + "\n",
                      overwrite=True)
