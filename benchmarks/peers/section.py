"""The ``peers`` benchmark section: published zero-shot denoisers and CAREamics N2V on FMD
frames, next to BM3D-GAT on the same frames.

* FM2S, Noise2Fast and ZS-N2N are trained per image (zero-shot), each for at most
  ``--peer-budget`` CPU seconds per image (default: the suite's quality budget; ``paper``:
  the published schedule or stopping rule alone).
* CAREamics N2V is trained like our variants: one model per microscope type, with the
  quality section's total budget split by image count (``--budget``).
* BM3D-GAT is the quality section's baseline (GAT with ``a, b`` estimated per image).

Scores use :func:`benchmarks.quality.score` per image; times are CPU seconds per torch
thread. Finished per-image results are kept with ``--resume`` (same budgets).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks import classical, datasets, quality
from benchmarks.peers import CAREAMICS_KEY, PER_IMAGE, careamics_n2v, fm2s
from benchmarks.peers.common import cpu_seconds

BM3D_KEY = "bm3d-gat"
KEYS = (BM3D_KEY, *PER_IMAGE, CAREAMICS_KEY)
LABELS = {BM3D_KEY: "BM3D (GAT, estimated a,b)", **{k: v[0] for k, v in PER_IMAGE.items()},
          CAREAMICS_KEY: "CAREamics N2V (one model per microscope type)"}
SEED = 0
Log = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's command-line options."""
    parser.add_argument("--peers", default=",".join(KEYS),
                        help=f"peers section: comma-separated methods out of {', '.join(KEYS)}")
    parser.add_argument("--peer-budget", default=None,
                        help="peers section: CPU seconds per image for the per-image peers, "
                             "or 'paper' for their published schedules (default: --budget)")
    parser.add_argument("--frames", default=None,
                        help="peers section: FMD frame numbers 1-4, e.g. 3,4 (default: 1; "
                             "suite full: 1,2,3,4)")
    parser.add_argument("--categories", default="",
                        help="peers section: FMD categories containing one of these words, "
                             "e.g. Confocal,WideField_BPAE_G (default: all 12)")


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _single(ds: datasets.Dataset, i: int) -> datasets.Dataset:
    """Image ``i`` of ``ds`` alone (for :func:`quality.score`)."""
    return dataclasses.replace(ds, names=[ds.names[i]], clean=[ds.clean[i]],
                               noisy=[ds.noisy[i]], groups=None)


def _scored(ds: datasets.Dataset, i: int, out: np.ndarray) -> dict:
    s = quality.score(_single(ds, i), [np.asarray(out, dtype=np.float32)])
    return {"name": ds.names[i], "psnr": s["psnr"], "ssim": s["ssim"]}


def select(cfg: dict, args) -> tuple[datasets.Dataset, list[str], float | None, float]:
    """The frames, the methods, the per-image budget and the per-data-set budget."""
    keys = [k.strip() for k in (getattr(args, "peers", "") or ",".join(KEYS)).split(",")
            if k.strip()]
    unknown = sorted(set(keys) - set(KEYS))
    if unknown:
        raise SystemExit(f"--peers: unknown {unknown}; known: {list(KEYS)}")
    smoke = getattr(args, "suite", "quick") == "smoke"
    frames = getattr(args, "frames", None) or ("1" if cfg["quick"] else "1,2,3,4")
    cats = [c for c in (getattr(args, "categories", "") or "").split(",") if c.strip()]
    if smoke and not cats:
        cats = ["Confocal_FISH"]
    try:
        ds = datasets.fmd_frames(_ints(frames), cats or None)
    except ValueError as exc:
        raise SystemExit(f"peers: {exc}") from exc
    group_budget = float(getattr(args, "budget", None) or cfg["budget"])
    raw = getattr(args, "peer_budget", None)
    peer_budget = None if raw == "paper" else float(raw) if raw else group_budget
    return ds, keys, peer_budget, group_budget


def _per_image(key: str, ds: datasets.Dataset, i: int, budget: float | None) -> dict:
    """One per-image method (a peer or BM3D) on image ``i``."""
    noisy, wall = ds.noisy[i], time.perf_counter()
    if key == BM3D_KEY:
        fn = classical.baselines(ds)[LABELS[BM3D_KEY]]
        out, sec = cpu_seconds(lambda: fn(noisy))
        entry = {"train_s": None, "predict_s": sec, "steps": None, "finished": None}
    else:
        extra = {"preset": fm2s.preset_for(ds.names[i])} if key == "fm2s" else {}
        res = PER_IMAGE[key][1](noisy, seconds=budget, seed=SEED, data_range=ds.data_range,
                                **extra)
        out = res.output
        entry = {"train_s": res.train_s, "predict_s": res.predict_s, "steps": res.steps,
                 "finished": res.finished, **({"extra": res.extra} if res.extra else {})}
    return {"peer": key, **_scored(ds, i, out), **entry, "wall_s": time.perf_counter() - wall}


def _careamics(ds: datasets.Dataset, budget: float, log: Log) -> dict:
    """CAREamics N2V per microscope type; ``status`` ``ok`` or ``unavailable`` with why."""
    groups = ds.groups or [list(range(len(ds.noisy)))]
    res: dict = {"status": "ok", "budget_s": budget, "models": [], "per_image": []}
    for idx in groups:
        seconds = budget * len(idx) / len(ds.noisy)
        try:
            outs, summary = careamics_n2v.train_predict(
                [ds.noisy[i] for i in idx], seconds=seconds, threads=torch.get_num_threads(),
                seed=SEED)
        except careamics_n2v.Unavailable as exc:
            log(f"  CAREamics N2V unavailable: {exc}")
            return {"status": "unavailable", "message": str(exc), "budget_s": budget}
        res["version"] = summary.get("careamics")
        res["models"].append({"images": [ds.names[i] for i in idx], **summary})
        res["per_image"] += [_scored(ds, i, o) for i, o in zip(idx, outs, strict=True)]
        log(f"  CAREamics N2V {ds.names[idx[0]].split('_')[0]}: {summary['steps']} steps, "
            f"{summary['train_s']:.0f} s")
    return res


def _row(key: str, entries: list[dict], n: int) -> dict:
    """Means over the images of one per-image method."""
    row = {"method": LABELS[key], "key": key, "kind": "classical" if key == BM3D_KEY else "peer",
           "psnr": float(np.mean([e["psnr"] for e in entries])),
           "ssim": float(np.mean([e["ssim"] for e in entries])),
           "psnr_per_image": [round(e["psnr"], 3) for e in entries],
           "predict_s_per_image": float(np.mean([e["predict_s"] for e in entries])),
           "n_images": n}
    if key != BM3D_KEY:  # training-free
        row["train_s_per_image"] = float(np.mean([e["train_s"] for e in entries]))
        row["steps_per_image"] = float(np.mean([e["steps"] for e in entries]))
        row["finished"] = sum(bool(e["finished"]) for e in entries)
    return row


def rows(ds: datasets.Dataset, out: dict, keys: list[str]) -> list[dict]:
    """The table rows: noisy input, then every method that covered all frames."""
    table = [{"method": "noisy input", "kind": "input", **quality.score(ds, ds.noisy)}]
    for key in keys:
        if key == CAREAMICS_KEY:
            car = out.get("careamics") or {}
            if car.get("status") != "ok":
                table.append({"method": LABELS[key], "key": key, "kind": "peer",
                              "unavailable": car.get("message", "not run")})
                continue
            n = len(ds.names)
            table.append({"method": LABELS[key], "key": key, "kind": "peer",
                          "psnr": float(np.mean([e["psnr"] for e in car["per_image"]])),
                          "ssim": float(np.mean([e["ssim"] for e in car["per_image"]])),
                          "train_s_per_image": sum(m["train_s"] for m in car["models"]) / n,
                          "predict_s_per_image": sum(m["predict_s"] for m in car["models"]) / n,
                          "steps": sum(m["steps"] for m in car["models"]), "n_images": n})
            continue
        by_name = {e["name"]: e for e in out["per_image"] if e["peer"] == key}
        if all(name in by_name for name in ds.names):
            table.append(_row(key, [by_name[name] for name in ds.names], len(ds.names)))
    return table


def run(cfg: dict, args, previous: dict, save: Callable[[dict], None], log: Log) -> dict:
    """Run the section; ``save`` gets the partial result after every image."""
    ds, keys, peer_budget, group_budget = select(cfg, args)
    out: dict = {"dataset": {"name": ds.name, "description": ds.description,
                             "names": ds.names, "n_images": len(ds.names)},
                 "peer_budget_s": peer_budget, "budget_s": group_budget, "per_image": [],
                 "careamics_settings": careamics_n2v.SETTINGS}
    same = previous.get("peer_budget_s") == peer_budget
    done = {(e["peer"], e["name"]): e for e in previous.get("per_image", []) if same}
    log(f"peers: {ds.description}; {keys}; per-image budget "
        f"{'paper schedule' if peer_budget is None else f'{peer_budget:g} s'}")
    for key in keys:
        if key == CAREAMICS_KEY:
            prev = previous.get("careamics") or {}
            if (prev.get("status") == "ok" and prev.get("budget_s") == group_budget
                    and {e["name"] for e in prev["per_image"]} == set(ds.names)):
                out["careamics"] = prev
            else:
                out["careamics"] = _careamics(ds, group_budget, log)
            save(out)
            continue
        for i, name in enumerate(ds.names):
            entry = done.get((key, name)) or _per_image(key, ds, i, peer_budget)
            out["per_image"].append(entry)
            save(out)
            log(f"  {LABELS[key]} {name}: {entry['psnr']:.2f} dB, {entry['steps']} steps, "
                f"{(entry['train_s'] or 0.0) + entry['predict_s']:.1f} s")
    out["rows"] = rows(ds, out, keys)
    return out
