"""``python -m benchmarks.run --suite quick|full [--only SECTION,...]``: run and report.

Sections: ``quality`` (variants and classical baselines on real data), ``time-to-quality``,
``speed`` (training/inference throughput, peak memory), ``limit`` (FLOPs, achieved
GFLOP/s against the measured matmul peak) and ``peers`` (FM2S, Noise2Fast, ZS-N2N and
CAREamics N2V next to BM3D-GAT on FMD frames, :mod:`benchmarks.peers.section`).
Results are merged into ``benchmarks/results.json`` section by section (a section not
run keeps its previous result) and rendered into the generated block of
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from benchmarks import datasets, machine, quality, report, speed, ttq
from benchmarks.peers import section as peers_section

HERE = Path(__file__).resolve().parent
SECTIONS = ("quality", "time-to-quality", "speed", "limit", "peers")
SUITES = {
    "quick": {"quick": True, "budget": 30.0, "ttq": {"n2v": 240.0, "best": 600.0},
              "speed_s": 5.0, "inference": 2048,
              "memory": [("unet", (8192, 8192)), ("blindspot", (8192, 2048))]},
    "full": {"quick": False, "budget": 120.0, "ttq": {"n2v": 600.0, "best": 1200.0},
             "speed_s": 12.0, "inference": 2048,
             "memory": [("unet", (8192, 8192)), ("blindspot", (8192, 8192)),
                        ("probabilistic-bsn", (8192, 8192))]},
    # a few minutes end to end, to check the pipeline (numbers are not meaningful)
    "smoke": {"quick": True, "budget": 3.0, "ttq": {"n2v": 6.0, "best": 8.0}, "speed_s": 1.0,
              "inference": 512, "memory": [("unet", (1024, 1024))]},
}
PRECISION_CHECK = ("n2v", "probabilistic-bsn")
RECIPE_TEXT = ("depth 3, width 32, growth 1, 64x64 patches, batch 8, Adam lr 1e-3 (N2V2 3e-4), "
               "no validation split")
DEFAULT_BEST = "probabilistic-bsn"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def resolve_threads(value: str) -> int:
    """``auto``: all cores on an idle machine, 1 when other processes already load it.

    With 2 cores and another busy process, two OpenMP threads wait for each other at
    every barrier; measured here that made training 10-20x slower than one thread.
    """
    cores = os.cpu_count() or 1
    if value != "auto":
        return max(1, int(value))
    return cores if os.getloadavg()[0] < 0.5 else max(1, cores - 1)


def run_quality(cfg: dict, args, previous: dict, save, stored: dict | None = None) -> dict:
    """Quality section. With ``--recipes`` only those variants are (re)trained and their
    rows replace the same variants' rows of the ``stored`` section (same budget)."""
    quick = cfg["quick"]
    budget = args.budget or cfg["budget"]
    recipes = [r for r in getattr(args, "recipes", "").split(",") if r]
    if recipes:
        unknown = set(recipes) - set(quality.RECIPES) - set(quality.CASCADES)
        if unknown:
            raise SystemExit(f"--recipes: unknown {sorted(unknown)}; known: "
                             f"{[*quality.RECIPES, *quality.CASCADES]}")
        if not stored or stored.get("budget_s") != budget:
            raise SystemExit("--recipes needs a stored quality section with the same budget")
        only = [d for d in getattr(args, "datasets", "").split(",") if d]
        return _rerun_recipes(quick, stored, recipes, budget, save, only)
    out = {"budget_s": budget, "precision": "bfloat16", "datasets": [],
           "recipe": RECIPE_TEXT}
    if previous.get("budget_s") != budget:
        previous = {}
    done = {d["name"]: d for d in previous.get("datasets", [])}
    sets = datasets.load_all(quick)
    if args.suite == "smoke":
        sets = [datasets.bsd68(True)]
    if getattr(args, "datasets", ""):
        wanted = args.datasets.split(",")
        unknown = set(wanted) - {d.name for d in sets}
        if unknown:
            raise SystemExit(f"--datasets: unknown {sorted(unknown)}; "
                             f"known: {[d.name for d in sets]}")
        sets = [d for d in sets if d.name in wanted]
    for ds in sets:
        if ds.name in done and done[ds.name]["n_images"] == len(ds.noisy):
            log(f"quality: {ds.name} kept from the previous (resumed) run")
            out["datasets"].append(done[ds.name])
            continue
        log(f"quality: {ds.name} ({len(ds.noisy)} images)")
        rows = quality.run_dataset(ds, budget, [*quality.RECIPES, *quality.CASCADES], log)
        out["datasets"].append({"name": ds.name, "description": ds.description,
                                "n_images": len(ds.noisy), "rows": rows})
        save(out)
    bsd = sets[0]
    if "precision_check" in previous:
        out["precision_check"] = previous["precision_check"]
    elif getattr(args, "datasets", ""):
        log("quality: --datasets given, bfloat16 vs float32 check skipped")
    else:
        log("quality: bfloat16 vs float32 check")
        out["precision_check"] = {"dataset": bsd.name, "rows": quality.precision_check(
            bsd, budget, list(PRECISION_CHECK), log)}
    return out


def _rerun_recipes(quick: bool, stored: dict, recipes: list[str], budget: float, save,
                   only: list[str]) -> dict:
    """Retrain ``recipes`` on the stored data sets (``only`` these, if given); replace
    their rows in place."""
    out = json.loads(json.dumps({k: v for k, v in stored.items() if k != "meta"}))
    out["recipe"] = RECIPE_TEXT
    by_name = {d.name: d for d in datasets.load_all(quick)}
    for entry in out["datasets"]:
        if only and entry["name"] not in only:
            continue
        ds = by_name[entry["name"]]
        log(f"quality: {ds.name}: retraining {recipes}")
        new = quality.run_dataset(ds, budget, recipes, log, with_baselines=False)[1:]
        rows, placed = [], False
        for row in entry["rows"]:
            if row.get("variant") in recipes:
                if not placed:
                    rows.extend(new)
                    placed = True
                continue
            rows.append(row)
        if not placed:
            at = next((i for i, r in enumerate(rows) if r.get("kind") == "classical"), len(rows))
            rows[at:at] = new
        entry["rows"] = rows
        entry.setdefault("rerun", []).append({"recipes": recipes, "date": time.strftime(
            "%Y-%m-%d %H:%M"), "command": " ".join(sys.argv)})
        save(out)
    return out


def _screening_best(results: dict) -> str | None:
    """Best self-supervised variant on BSD68 in the latest quality section (short budget)."""
    try:
        rows = results["sections"]["quality"]["datasets"][0]["rows"]
    except (KeyError, IndexError):
        return None
    ss = [r for r in rows if r.get("kind") == "self-supervised"
          and r.get("variant") in quality.RECIPES]
    return max(ss, key=lambda r: r["psnr"])["variant"] if ss else None


def run_ttq(cfg: dict, args, results: dict, previous: dict, save) -> dict:
    """N2V and the probabilistic blind-spot net (best at long budgets), on BSD68 quick.

    The quality section's short budget favours fast-converging masked U-Nets, so its
    winner is only added (full suite) when it differs.
    """
    ds = datasets.bsd68(True)
    budgets = {"n2v": cfg["ttq"]["n2v"], DEFAULT_BEST: cfg["ttq"]["best"]}
    screening = _screening_best(results)
    if not cfg["quick"] and screening and screening not in budgets:
        budgets[screening] = cfg["ttq"]["n2v"]
    log(f"time-to-quality on {ds.name}: {budgets}")
    done = previous.get("result", {}).get("series", {})

    def partial(res: dict) -> None:
        save({"result": res, "plot": "time_to_quality.png"})

    res = ttq.run(ds, budgets, log, done=done, save=partial)
    res["screening_best"] = screening
    baselines = {}
    try:
        for row in results["sections"]["quality"]["datasets"][0]["rows"]:
            if row.get("kind") == "classical" and row["method"].startswith("BM3D"):
                baselines[f"{row['method']} (this run)"] = row["psnr"]
    except (KeyError, IndexError):
        pass
    ttq.plot(res, args.results.parent / "time_to_quality.png", baselines)
    return {"result": res, "plot": "time_to_quality.png"}


def run_speed(cfg: dict, args, previous: dict | None = None, save=None) -> dict:
    images = datasets.bsd68(True).noisy
    previous = previous or {}
    out: dict = {"training": [], "inference": [], "memory": []}

    def kept(kind: str, match: dict) -> dict | None:
        for row in previous.get(kind, []):
            if all(row.get(k) == v for k, v in match.items()) and "error" not in row:
                out[kind].append(row)
                return row
        return None

    def saved() -> None:
        if save is not None:
            save(out)

    cases = speed.train_cases(cfg["quick"])
    if args.suite == "smoke":
        cases = cases[:2]
    for case in cases:
        if kept("training", {"backbone": case.backbone, "patch": case.patch,
                             "batch": case.batch, "precision": case.precision}):
            continue
        row = speed.training_throughput(case, images, cfg["speed_s"])
        out["training"].append(row)
        saved()
        log(f"speed: {row['label']} {case.patch}x{case.patch} b{case.batch} {case.precision}: "
            f"{row['patches_per_s']:.1f} patches/s")
    for bb in ("unet", "blindspot"):
        model = None
        for precision in ("float32", "bfloat16"):
            if kept("inference", {"backbone": bb, "precision": precision,
                                  "size": cfg["inference"]}):
                continue
            model = model or speed.tiny_model(bb, images)
            row = {"backbone": bb, "label": speed.BACKBONES[bb][2],
                   **speed.inference_throughput(model, cfg["inference"], precision)}
            out["inference"].append(row)
            saved()
            log(f"speed: inference {bb} {precision}: {row['mpix_per_s']:.3f} MP/s")
    for key, shape in cfg["memory"]:
        posterior = key == "probabilistic-bsn"
        label = key + (" (posterior)" if posterior else "")
        if kept("memory", {"label": label, "shape": list(shape)}):
            continue
        bb = "blindspot" if posterior else key
        model = speed.tiny_model(bb, images, variant_key=key if posterior else None)
        row = {"label": label,
               **speed.memory_probe(model, shape, torch.get_num_threads(), posterior)}
        out["memory"].append(row)
        saved()
        log(f"speed: memory {row['label']} {shape}: {row.get('peak_rss_mb', row.get('error'))}")
    return out


def run_limit(cfg: dict, args, results: dict) -> dict:
    peaks = {"float32": speed.matmul_peak(torch.float32),
             "bfloat16": speed.matmul_peak(torch.bfloat16)}
    flops = {bb: speed.flop_counts(bb) for bb in speed.BACKBONES}
    sp = results.get("sections", {}).get("speed")
    if sp is None:
        log("limit: no speed results; measuring a reduced set")
        sp = run_speed({**cfg, "memory": []}, argparse.Namespace(suite="smoke"))
    achieved = []
    for r in sp["training"]:
        f = flops[r["backbone"]]
        per_px = f["train_gflop_per_patch"] * 1e9 / f["patch"] ** 2
        target = r["patch"] == 64 and r["batch"] == 8 and r["precision"] == "bfloat16" \
            and r["backbone"] in ("unet", "blindspot")
        achieved.append({"what": f"training {r['label']}, {r['patch']}x{r['patch']} "
                                 f"batch {r['batch']}", "precision": r["precision"],
                         "gflops": per_px * r["mpix_per_s"] * 1e6 / 1e9, "target": target})
    for r in sp["inference"]:
        f = flops[r["backbone"]]
        achieved.append({"what": f"inference {r['label']}, {r['size']}x{r['size']} tiled",
                         "precision": r["precision"], "target": True,
                         "gflops": f["fwd_flop_per_px"] * r["mpix_per_s"] * 1e6 / 1e9})
    for key, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        peaks[key] = max(peaks[key], speed.matmul_peak(dtype))
    for a in achieved:
        a["pct_fp32_peak"] = 100 * a["gflops"] / peaks["float32"]
        a["pct_bf16_peak"] = 100 * a["gflops"] / peaks["bfloat16"]
    return {"peaks": peaks, "flops": list(flops.values()), "achieved": achieved}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections out of {', '.join(SECTIONS)}")
    parser.add_argument("--threads", default="auto", help="torch threads, or 'auto'")
    parser.add_argument("--datasets", default="",
                        help="comma-separated quality data sets (default: all of the suite); "
                             "skips the precision check")
    parser.add_argument("--recipes", default="",
                        help="comma-separated variants to retrain in the quality section; "
                             "their rows replace those of the stored run (same budget)")
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds per variant and data set in the quality "
                             "section (and for CAREamics N2V in the peers section)")
    peers_section.add_arguments(parser)
    parser.add_argument("--results", type=Path, default=HERE / "results.json")
    parser.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished parts of a section from the results file (same "
                             "suite), e.g. after the run was killed")
    parser.add_argument("--render-only", action="store_true",
                        help="only re-render the markdown from the results file")
    args = parser.parse_args(argv)
    if args.render_only:
        report.update_markdown(args.markdown, report.render(json.loads(args.results.read_text())))
        return
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    cfg = SUITES[args.suite]
    threads = resolve_threads(args.threads)
    torch.set_num_threads(threads)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in
                                                     (argv if argv is not None else sys.argv[1:]))
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results["machine"] = machine.machine_info()
    results.setdefault("sections", {})
    log(f"suite {args.suite}, sections {only}, {threads} thread(s), "
        f"load {machine.load_average()}")
    for name in SECTIONS:
        if name not in only:
            continue
        timer = machine.SectionTimer(command, args.suite, threads)
        key = name.replace("-", "_")
        previous = results["sections"].get(key, {})
        if not args.resume or previous.get("meta", {}).get("suite") != args.suite:
            previous = {}

        def save(partial: dict, key: str = key, timer=timer) -> None:
            results["sections"][key] = {**partial, "meta": {**timer.meta, "partial": True,
                                                            "wall_s": 0.0, "cpu_s": 0.0}}
            args.results.write_text(json.dumps(results, indent=1, default=float) + "\n")

        if name == "quality":
            data = run_quality(cfg, args, previous, save,
                               stored=results["sections"].get("quality"))
        elif name == "time-to-quality":
            data = run_ttq(cfg, args, results, previous, save)
        elif name == "speed":
            data = run_speed(cfg, args, previous, save)
        elif name == "peers":
            data = peers_section.run(cfg, args, previous, save, log)
        else:
            data = run_limit(cfg, args, results)
        data["meta"] = timer.finish()
        if previous:
            data["meta"]["resumed_from"] = previous.get("meta", {}).get("date")
        results["sections"][key] = data
        args.results.write_text(json.dumps(results, indent=1, default=float) + "\n")
        report.update_markdown(args.markdown, report.render(results))
        log(f"{name} done in {data['meta']['wall_s']:.0f} s; wrote {args.results.name} and "
            f"{args.markdown.name}")


if __name__ == "__main__":
    main()
