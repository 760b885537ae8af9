"""``python -m benchmarks.nd quality|lls|speed|figure|report``: 3-D networks against
slice-by-slice 2-D ones (issue 14).

* ``quality``: every method, 2-D (YX planes) and 3-D (ZYX) at the same budget of
  training-step CPU seconds, on two high-SNR real stacks with synthetic Poisson-Gaussian
  noise (:data:`STACKS`); PSNR and 3-D SSIM against the scaled clean stack.
* ``curve``: n2v 2-D and 3-D quality against training CPU seconds (weight snapshots).
* ``lls``: the real lattice light-sheet stack (no ground truth): n2v 2-D vs 3-D (and
  ``--method``) by the ground-truth-free score, and ``benchmarks/nd_lls_xz.png``.
* ``speed``: the default 3-D recipe's training and prediction voxels/s at one thread and
  the peak RSS of denoising generated uint16 stacks, each in a fresh subprocess
  (``probe``); a stand-in network that only copies its input gives the arrays' share.
* ``figure``: ``docs/nd-nucleus.png`` (3-D vs 2-D n2v on the noisy nucleus crop).

Budgets are CPU seconds of the training steps per torch thread
(:class:`benchmarks.training.StepClock`), never wall time: the machine is shared. Rows go
to ``benchmarks/out/nd/*.jsonl`` (a rerun skips the rows already there); ``report``
prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.datasets import data_root
from benchmarks.machine import SectionTimer, machine_info
from benchmarks.nd_figures import (
    lls_figure,
    nucleus_figure,
    report_curve,
    report_lls,
    report_quality,
)
from benchmarks.training import StepClock
from n2v_cascade import train
from n2v_cascade.config import make_config
from n2v_cascade.imagefile import read_image_nd
from n2v_cascade.methods import methods

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "nd"
ND = data_root() / "microscopy_nd"
SEED = 20261214
READ_SIGMA = 2.0  # Gaussian read noise (photons) added after the Poisson sampling
# key: (file, channel or None, photons at the clean 99.9th percentile, 2-D patch, ZYX um)
STACKS = {
    "nucleus": ("ncp_cells3d_nucleus_crop_zyx/nucleus.tif", None, 30.0, 48, (0.29, 0.26, 0.26)),
    "neubias-dna-c0": ("neubias_dna_conf_wf_zcyx/xyzc_16bit__dna_conf_wf.tif", 0, 20.0, 64,
                       (0.4994, 0.5119, 0.5119)),
}
LLS = "lls_rbc_lattice_zyx/RBC_lattice.tif"
LLS_UM = (0.3, 0.145, 0.145)
PATCH_3D = {"patch_z": 16, "patch_size": 32, "batch_size": 4}  # 2-D: batch 8 (default)
SPEED_3D = {"patch_z": 16, "patch_size": 64, "batch_size": 8}
# real prediction runs (the blind-spot net's 544-voxel default tile holds these whole)
MAX_PROBE_BYTES = 16 << 30  # address space of a probe (this machine: 23.5 GB, shared)
PREDICT = {"n2v": ["32x512x512"], "blindspot": ["16x128x128", "32x192x192"]}


# --- data and training ---------------------------------------------------------------

def synthetic(key: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(clean stack in photons, noisy stack, PSNR data range) of a :data:`STACKS` entry."""
    name, channel, photons, _, _ = STACKS[key]
    data, meta = read_image_nd(ND / name)
    clean = data[:, channel] if channel is not None else data  # ZCYX -> ZYX; nucleus: ZYX
    clean = clean.astype(np.float64) * (photons / np.percentile(clean, 99.9))
    rng = np.random.default_rng(SEED + list(STACKS).index(key))
    noisy = rng.poisson(clean) + rng.normal(0.0, READ_SIGMA, clean.shape)
    return clean.astype(np.float32), noisy.astype(np.float32), float(clean.max() - clean.min())


def recipe(variant: str, dims: int, patch_2d: int = 64, **extra):
    """TrainConfig defaults except dims, the patches and one long epoch (the budget stops it)."""
    patch = PATCH_3D if dims == 3 else {"patch_size": patch_2d}
    return make_config("nd", variant=variant, dims=dims, epochs=1, steps_per_epoch=100_000,
                       **patch, **extra)


def fit(noisy: np.ndarray, cfg, budget: float):
    clock = StepClock(budget)
    t0 = time.perf_counter()
    model = train(noisy, cfg, axes="ZYX", progress=False, callbacks=[clock])
    return model, {"steps": clock.steps, "train_cpu_s": round(clock.seconds, 1),
                   "train_wall_s": round(time.perf_counter() - t0, 1),
                   "precision": model.config.precision,
                   "blind_radius": model.config.network.blind_radius}


def denoise(model, noisy: np.ndarray) -> tuple[np.ndarray, dict]:
    """Defaults (tile 512, posterior auto); wall and CPU seconds, share of posterior picks."""
    info: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    out = np.asarray(model.denoise(noisy, axes="ZYX", info=info), np.float32)
    row = {"predict_s": round(time.perf_counter() - t0, 1),
           "predict_cpu_s": round(time.process_time() - c0, 1),
           "finite": bool(np.isfinite(out).all())}
    if info:
        row["posterior_share"] = round(float(np.mean([bool(r["posterior"]) for r in info])), 2)
    return out, row


def scores(x: np.ndarray, clean: np.ndarray, dr: float) -> dict:
    from skimage.metrics import structural_similarity

    mse = float(np.mean((x.astype(np.float64) - clean) ** 2))
    return {"psnr": round(10 * np.log10(dr ** 2 / mse), 3),
            "ssim": round(float(structural_similarity(clean, x, data_range=dr)), 4)}


def scored_run(log: Log, keys: dict, noisy: np.ndarray, clean: np.ndarray, dr: float,
               cfg, budget: float) -> None:
    """Train ``cfg`` on ``noisy`` for ``budget`` CPU-s, denoise, score, write one row
    (skipped when a row with ``keys`` is there already)."""
    if log.done(**keys):
        return
    model, row = fit(noisy, cfg, budget)
    out, pred = denoise(model, noisy)
    log.write({**keys, "radius": model.receptive_radius(), **row, **pred,
               **scores(out, clean, dr)})


class Log:
    """Append-only JSON lines; ``done`` holds the keys of the rows already written."""

    def __init__(self, name: str, *key: str) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.path, self.key = OUT / f"{name}.jsonl", key
        self.rows = [json.loads(x) for x in self.path.read_text().splitlines()] \
            if self.path.exists() else []

    def done(self, **values) -> bool:
        return any(all(r.get(k) == values[k] for k in self.key) for r in self.rows)

    def write(self, row: dict) -> None:
        print(json.dumps(row), flush=True)
        self.rows.append(row)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def start(log: Log, command: str, suite: str) -> SectionTimer:
    timer = SectionTimer(command, suite, torch.get_num_threads())
    log.write({"kind": "meta", "machine": machine_info(), **timer.meta})
    return timer


# --- quality -------------------------------------------------------------------------

def quality(args) -> None:
    log = Log("quality", "stack", "method", "dims", "budget_s")
    timer = start(log, "python -m benchmarks.nd quality", "quality")
    for key in args.stacks:
        clean, noisy, dr = synthetic(key)
        if not log.done(stack=key, method="noisy", dims=0, budget_s=0):
            log.write({"stack": key, "method": "noisy", "dims": 0, "budget_s": 0,
                       "shape": list(noisy.shape), "photons": STACKS[key][2],
                       "read_sigma": READ_SIGMA, **scores(noisy, clean, dr)})
        for method in args.methods:
            for dims in (2, 3):
                scored_run(log, {"stack": key, "method": method, "dims": dims,
                                 "budget_s": args.budget}, noisy, clean, dr,
                           recipe(method, dims, STACKS[key][3]), args.budget)
    log.write({"kind": "section", **timer.finish()})
    print(report_quality(log.rows))


def curve(args) -> None:
    """PSNR/SSIM against training CPU seconds from weight snapshots of one run per dims."""
    log = Log("curve", "stack", "method", "dims", "train_s")
    timer = start(log, "python -m benchmarks.nd curve", "curve")
    for key in args.stacks:
        clean, noisy, dr = synthetic(key)
        for dims in (2, 3):
            clock = StepClock(max(args.marks), marks=args.marks)
            model = train(noisy, recipe(args.method, dims, STACKS[key][3]), axes="ZYX",
                          progress=False, callbacks=[clock])
            for mark, (seconds, steps, state) in zip(sorted(args.marks), clock.snapshots,
                                                     strict=True):
                model.network.load_state_dict(state)
                out, pred = denoise(model, noisy)
                log.write({"stack": key, "method": args.method, "dims": dims,
                           "mark": mark, "train_s": round(seconds), "steps": steps, **pred,
                           **scores(out, clean, dr)})
    log.write({"kind": "section", **timer.finish()})
    print(report_curve(log.rows))


def depth(args) -> None:
    """3-D U-Net depth 2 (the 3-D N2V paper's) against 3 (the 2-D default) at one budget."""
    log = Log("depth", "stack", "method", "depth", "budget_s")
    timer = start(log, "python -m benchmarks.nd depth", "depth")
    for key in args.stacks:
        clean, noisy, dr = synthetic(key)
        for method in args.methods:
            for d in (2, 3):
                scored_run(log, {"stack": key, "method": method, "depth": d,
                                 "budget_s": args.budget}, noisy, clean, dr,
                           recipe(method, 3, network={"depth": d}), args.budget)
    log.write({"kind": "section", **timer.finish()})


# --- lattice light-sheet: ground-truth-free score ------------------------------------

def lls(args) -> None:
    from n2v_cascade.correlation import suggest_blind_radius
    from n2v_cascade.gtfree import SIGNIFICANT, SelfSupervisedError, compare

    log = Log("lls", "method", "dims", "budget_s")
    timer = start(log, "python -m benchmarks.nd lls", "lls")
    vol, _ = read_image_nd(ND / LLS)
    radius, corr = suggest_blind_radius(list(vol[::10]))
    log.write({"kind": "noise", "neighbour_corr_max": round(float(corr[:, 0].max()), 3),
               "suggested_blind_radius": radius})
    tracker = SelfSupervisedError([vol])
    scores_ = {}
    base, _ = tracker.evaluate(lambda x: x)  # no denoising: the hidden pixels' neighbours
    for method in ["n2v", *args.method]:
        for dims in (2, 3):
            model, row = fit(vol, recipe(method, dims), args.budget)
            out, pred = denoise(model, vol)
            np.save(OUT / f"lls-{method}-{dims}d.npy", out)
            t0 = time.perf_counter()
            score, _ = tracker.evaluate(lambda x, m=model: m.denoise(x, axes="ZYX"))
            scores_[(method, dims)] = score
            log.write({"method": method, "dims": dims, "budget_s": args.budget, **row, **pred,
                       "gtfree": round(float(score), 3), "gtfree_se": round(score.se, 3),
                       "identity_gtfree": round(float(base), 3),
                       "gtfree_s": round(time.perf_counter() - t0, 1)})
        diff, se = compare(scores_[(method, 3)], scores_[(method, 2)])
        log.write({"kind": "compare", "method": method, "budget_s": args.budget,
                   "diff_3d_minus_2d": round(diff, 4), "se": round(se, 4),
                   "significant": bool(abs(diff) > SIGNIFICANT * se)})
    lls_figure(vol, {f"{m} {d}-D": np.load(OUT / f"lls-{m}-{d}d.npy")
                     for m, d in scores_}, LLS_UM, ROOT / "benchmarks" / "nd_lls_xz.png")
    log.write({"kind": "section", **timer.finish()})
    print(report_lls(log.rows))


# --- speed and memory ----------------------------------------------------------------

def generated(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A uint16 camera-like stack: smooth blobs, Poisson noise, offset 100 (made slice by
    slice, so that no full-size temporaries raise the peak RSS)."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:shape[1], 0:shape[2]]
    plane = (np.cos(y / 23.0) * np.sin(x / 17.0)).astype(np.float32)
    out = np.empty(shape, np.uint16)
    for z in range(shape[0]):
        out[z] = rng.poisson(200 + 150 * np.sin(z / 5.0) * plane) + 100
    return out


def _reset_peak() -> None:
    """Restart the VmHWM count (Linux: 5 > /proc/self/clear_refs) so it holds only what follows."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:"))


def probe(args) -> None:
    """Subprocess: ``probe train VARIANT DIR`` or ``probe predict DIR Z Y X [--stub]``."""
    import resource

    torch.set_num_threads(1)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]  # a MemoryError, not the OOM killer
    resource.setrlimit(resource.RLIMIT_AS, (min(MAX_PROBE_BYTES, hard % 2**63), hard))
    if args.what == "train":
        variant, folder = args.rest
        data = generated((32, 128, 128))
        cfg = make_config("nd", variant=variant, dims=3, epochs=1, steps_per_epoch=100, **SPEED_3D)
        clock = StepClock(0.0, min_steps=3)  # one warm-up step and two timed ones
        model = train(data, cfg, axes="ZYX", progress=False, callbacks=[clock],
                      output_dir=folder, overwrite=True)
        step = float(np.mean(clock.step_times[1:]))
        voxels = SPEED_3D["batch_size"] * SPEED_3D["patch_z"] * SPEED_3D["patch_size"] ** 2
        print(json.dumps({"variant": variant, "precision": model.config.precision,
                          "batch_voxels": voxels, "step_cpu_s": round(step, 2),
                          "train_voxels_per_s": round(voxels / step),
                          "steps_timed": len(clock.step_times) - 1,
                          "peak_rss_mb": round(_peak_mb())}))
        return
    from n2v_cascade.model import Model, tile_shape

    model = Model.load(args.rest[0], device="cpu")
    shape = tuple(int(s) for s in args.rest[1:])
    if args.stub:  # same code path and arrays, no network activations
        model.network = _Copy(model.network)
    div = 2 ** model.config.network.depth
    overlap = -(-model.receptive_radius() // div) * div
    tiles = tile_shape(512, 3, overlap, div, [-(-n // div) * div for n in shape],
                       getattr(model.network, "tile_cost", 1))
    image = generated(shape)
    _reset_peak()
    base = _peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out = model.denoise(image, axes="ZYX")
    cpu = time.process_time() - c0
    print(json.dumps({"variant": model.config.variant, "shape": list(shape), "stub": args.stub,
                      "tile": list(tiles), "overlap": overlap, "voxels": image.size,
                      "cpu_s": round(cpu, 1), "wall_s": round(time.perf_counter() - t0, 1),
                      "voxels_per_s": round(image.size / cpu), "rss_before_mb": round(base),
                      "peak_rss_mb": round(_peak_mb()), "output_mb": round(out.nbytes / 2**20)}))


class _Copy(torch.nn.Module):
    """Stand-in network: the input repeated to the real network's output channels."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        with torch.no_grad():
            self.channels = net(torch.zeros(1, 1, 8, 16, 16)).shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1].repeat(1, self.channels, *([1] * (x.ndim - 2)))


def _run_probe(*argv: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.nd", "probe", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1], "argv": argv}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def speed(args) -> None:
    log = Log("speed", "case")
    timer = start(log, "python -m benchmarks.nd speed", "speed")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in ("n2v", "blindspot"):
            folder = str(Path(tmp) / variant)
            if variant == "n2v" or "predict" in args.cases:  # the stubs need the n2v model
                log.write({"case": f"train {variant}", **_run_probe("train", variant, folder)})
            for shape in PREDICT[variant] if "predict" in args.cases else ():
                log.write({"case": f"predict {variant} {shape}",
                           **_run_probe("predict", folder, *shape.split("x"))})
        for shape in args.stub if "stub" in args.cases else ():
            log.write({"case": f"predict n2v {shape} stub",
                       **_run_probe("predict", str(Path(tmp) / "n2v"), *shape.split("x"),
                                    "--stub")})
    log.write({"kind": "section", **timer.finish()})


# --- README figure ---------------------------------------------------------------------

def figure(args) -> None:
    log = Log("figure", "dims", "budget_s")
    timer = start(log, "python -m benchmarks.nd figure", "figure")
    clean, noisy, dr = synthetic("nucleus")
    outs = {}
    for dims in (2, 3):
        model, row = fit(noisy, recipe("n2v", dims, STACKS["nucleus"][3]), args.budget)
        outs[dims], pred = denoise(model, noisy)
        log.write({"dims": dims, "budget_s": args.budget, **row, **pred,
                   **scores(outs[dims], clean, dr)})
    nucleus_figure(noisy, outs[2], outs[3], clean, STACKS["nucleus"][4],
                   ROOT / "docs" / "nd-nucleus.png")
    log.write({"kind": "section", **timer.finish()})


def report(_args) -> None:
    for name, fn in (("quality", report_quality), ("curve", report_curve),
                     ("lls", report_lls)):
        path = OUT / f"{name}.jsonl"
        if path.exists():
            print(f"## {name}\n{fn([json.loads(x) for x in path.read_text().splitlines()])}\n")
    for name in ("speed", "figure"):
        path = OUT / f"{name}.jsonl"
        if path.exists():
            print(f"## {name}\n{path.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--budget", type=float, default=45.0)
    q.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    q.add_argument("--methods", nargs="+", default=list(methods()))
    c = sub.add_parser("curve")
    c.add_argument("--stacks", nargs="+", default=["nucleus"], choices=list(STACKS))
    c.add_argument("--method", default="n2v")
    c.add_argument("--marks", nargs="+", type=float, default=[40.0, 80.0, 160.0, 320.0])
    dp = sub.add_parser("depth")
    dp.add_argument("--budget", type=float, default=120.0)
    dp.add_argument("--stacks", nargs="+", default=list(STACKS), choices=list(STACKS))
    dp.add_argument("--methods", nargs="+", default=["n2v", "blindspot"])
    lp = sub.add_parser("lls")
    lp.add_argument("--budget", type=float, default=120.0)
    lp.add_argument("--method", nargs="*", default=[], help="methods besides n2v")
    sp = sub.add_parser("speed")
    sp.add_argument("--cases", nargs="+", default=["predict", "stub"],
                    choices=["predict", "stub"], help="training is always measured")
    sp.add_argument("--stub", nargs="*", default=["32x512x512", "64x1024x1024", "128x1024x1024"])
    fp = sub.add_parser("figure")
    fp.add_argument("--budget", type=float, default=120.0)
    pp = sub.add_parser("probe")
    pp.add_argument("what", choices=("train", "predict"))
    pp.add_argument("rest", nargs="+")
    pp.add_argument("--stub", action="store_true")
    sub.add_parser("report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    globals()[args.command](args)  # the function of the same name


if __name__ == "__main__":
    main()
