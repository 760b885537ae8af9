"""``python -m benchmarks.targets TARGET``: the issue-13 quality targets, default recipe.

Targets (each trains the default recipe, ``TrainConfig`` defaults with ``--variant``
(default: the default method), for a budget of training-step CPU seconds, then denoises
with the defaults (a probabilistic blind-spot model chooses prior or posterior per
image); BM3D-GAT with (a, b) estimated by the package's own fit on the same frames):

* ``confocal``: the 20 FMD ``Confocal_*`` frames, one model per category (4 frames), 300 s.
* ``fmd``: all 48 FMD frames, one model per microscope type, 180 s per type.
* ``bsd68``: BSD68 test001-004, Gaussian sigma 25 (not given to the method), 600 s.

With ``--refine`` each group trains as the ``train`` command does (``train_refined``:
two phases when the noise is spatially correlated), its budget as a time limit split
between the phases; ``--no-bm3d`` leaves BM3D out where no earlier row has its score.

One JSON line per frame goes to ``benchmarks/out/targets/<target>-<variant><tag>.jsonl`` (a
rerun skips the groups already there), and a summary line per target at the end. Each row
also scores the prior with test-time augmentation (``tta``: the 8 flips/quarter turns
averaged). BM3D-GAT depends only on the frame, so a frame's BM3D score is read from any
earlier row in ``benchmarks/out/targets/`` instead of being recomputed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import datasets
from benchmarks.classical import bm3d_denoise
from benchmarks.training import StepClock
from n2v_cascade import train, train_refined
from n2v_cascade.config import TrainConfig, make_config
from n2v_cascade.methods import get_method
from n2v_cascade.noise import estimate_poisson_gaussian

OUT = Path(__file__).resolve().parent / "out" / "targets"


def psnr(x: np.ndarray, clean: np.ndarray, data_range: float = 255.0) -> float:
    err = np.mean((np.asarray(x, np.float64) - clean) ** 2)
    return float(10 * np.log10(data_range ** 2 / err))


def groups_of(target: str):
    """(group name, frame names, noisy, clean, budget s, noise kind, bm3d sigma)."""
    if target == "bsd68":
        ds = datasets.bsd68(True)
        yield "bsd68", ds.names, ds.noisy, ds.clean, 600.0, "gaussian", datasets.BSD_SIGMA
        return
    ds = datasets.fmd(False)
    prefix = {"confocal": ("Confocal",), "fmd": ("Confocal", "TwoPhoton", "WideField")}[target]
    keys = sorted({n.rsplit("_", 1)[0] for n in ds.names}) if target == "confocal" else prefix
    for key in keys:
        if not key.startswith(prefix):
            continue
        idx = [i for i, n in enumerate(ds.names) if n.startswith(key + "_")]
        budget = 300.0 if target == "confocal" else 180.0
        yield (key, [ds.names[i] for i in idx], [ds.noisy[i] for i in idx],
               [ds.clean[i] for i in idx], budget, "poisson-gaussian", None)


def known_bm3d() -> dict[str, float]:
    """Frame name -> BM3D-GAT PSNR from earlier rows (BM3D is deterministic per frame)."""
    scores: dict[str, float] = {}
    for path in sorted(OUT.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "frame" in row and "bm3d_gat" in row:
                scores.setdefault(row["frame"], row["bm3d_gat"])
    return scores


def bm3d_score(x: np.ndarray, gt: np.ndarray, sigma: float | None) -> float:
    """PSNR of BM3D with the given sigma, or in the GAT domain with the estimated (a, b)."""
    if sigma is not None:
        return psnr(bm3d_denoise(x, sigma, None, 255.0), gt)
    a, b = estimate_poisson_gaussian(x)
    return psnr(bm3d_denoise(x, None, (max(a, 1e-3), max(b, 0.0)), 255.0), gt)


def run_group(name, frames, noisy, clean, budget, kind, sigma, log, variant, seed=0,
              bm3d: dict[str, float] | None = None, refine: bool = False,
              with_bm3d: bool = True) -> list[dict]:
    # refined: 3 epochs so the phases split 1 / 2; the time limit stops them
    recipe = {"variant": variant, "epochs": 3 if refine else 1, "steps_per_epoch": 100000,
              "seed": seed}
    cfg = make_config("targets", **recipe,
                      **({"noise_model": {"kind": kind}} if kind != "gaussian" else {}))
    if not get_method(cfg).predicts_variance:
        cfg = make_config("targets", **recipe)
    bm3d = bm3d or {}
    clock = StepClock(budget)
    t0 = time.perf_counter()
    if refine:
        model = train_refined(noisy, cfg, progress=False, time_limit=budget)
        clock.steps, clock.seconds = None, model.train_seconds
    else:
        model = train(noisy, cfg, progress=False, callbacks=[clock])
    wall = time.perf_counter() - t0
    rows = []
    for frame, x, gt in zip(frames, noisy, clean, strict=True):
        info: list = []
        auto = model.denoise(x, info=info)
        prior = model.denoise(x, posterior=False, blend="none")
        post = (model.denoise(x, posterior=True) if model.method.predicts_variance
                else prior)
        tta = model.denoise(x, tta=True, posterior=False)
        row = {"group": name, "frame": frame, "noisy": psnr(x, gt), "auto": psnr(auto, gt),
               "prior": psnr(prior, gt), "posterior": psnr(post, gt), "tta": psnr(tta, gt),
               "bm3d_gat": bm3d[frame] if frame in bm3d else (
                   bm3d_score(x, gt, sigma) if with_bm3d else None),
               "chose_posterior": bool(info and info[0]["posterior"]), "steps": clock.steps,
               "blend": round(float(info[0].get("blend", 0.0)), 4) if info else 0.0,
               **{k: info[0][k] for k in ("score_prior", "score_posterior", "score_error")
                  if info and k in info[0]},
               "variant": model.config.variant, "seed": seed,
               "train_cpu_s": round(clock.seconds, 1), "train_wall_s": round(wall, 1),
               "precision": model.config.precision,
               "blind_radius": model.config.network.blind_radius}
        rows.append(row)
        log(json.dumps(row))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("confocal", "fmd", "bsd68"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", default=TrainConfig.model_fields["variant"].default)
    parser.add_argument("--tag", default="", help="suffix of the output file (another run "
                        "of the same target and variant, e.g. after a code change)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--refine", action="store_true", help="train as the train command "
                        "does (two phases for correlated noise)")
    parser.add_argument("--no-bm3d", action="store_true", help="skip BM3D where no earlier "
                        "row has its score")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.target}-{args.variant}{args.tag}.jsonl"
    done = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    groups = list(groups_of(args.target))
    complete = {g[0] for g in groups
                if set(g[1]) <= {r["frame"] for r in done if r["group"] == g[0]}}
    if any(r["group"] not in complete for r in done):  # a group cut short is rerun whole
        done = [r for r in done if r["group"] in complete]
        path.write_text("".join(json.dumps(r) + "\n" for r in done))
    bm3d = known_bm3d()
    with path.open("a") as fh:
        def log(line: str) -> None:
            print(line, flush=True)
            fh.write(line + "\n")
            fh.flush()
        for group in groups:
            if group[0] not in complete:
                done += run_group(*group, log=log, variant=args.variant, seed=args.seed,
                                  bm3d=bm3d, refine=args.refine, with_bm3d=not args.no_bm3d)
    keys = ("noisy", "auto", "prior", "posterior", "bm3d_gat")
    summary = {k: round(float(np.mean([r[k] for r in done])), 2) for k in keys
               if all(r[k] is not None for r in done)}
    summary["min_auto_minus_noisy"] = round(min(r["auto"] - r["noisy"] for r in done), 2)
    summary["min_auto_minus_prior"] = round(min(r["auto"] - r["prior"] for r in done), 2)
    summary["frames"] = len(done)
    print(json.dumps({"target": args.target, **summary}), flush=True)


if __name__ == "__main__":
    main()
