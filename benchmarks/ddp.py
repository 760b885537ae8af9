"""Training throughput with one and with two CPU processes (DDP, gloo) at one global batch.

Run by hand: ``python -m benchmarks.ddp [--image PATH] [--repeats 2]``. Every case is
``n2v-cascade train`` in fresh processes (``--processes N`` for N > 1) on a real noisy
image, read where it lies and never copied; the throughput is the second epoch's
patches per second of the global batch (the first epoch is the warm-up: oneDNN kernel
choice, the first exchanges), from the seconds the model's history records. No
validation strip is held out, so an epoch is only training steps. The cases:

* 1 process using every core (the default for one process),
* 1 process with one thread per process as the two-process case has,
* 2 processes with one thread each (``--processes 2`` gives each its share of the cores).

The load average before and after each case is printed: on a shared machine it decides
more than the process count. Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.machine import load_average, machine_info

IMAGE = Path("/work/shared/data/microscopy_nd/neubias_eres_noisy_2d/"
             "xy_calibrated_16bit__cells_eres_noisy.tif")
# the package defaults (U-Net depth 3, width 32, 64x64 patches) with a global batch of 16
RECIPE = ["--patch-size", "64", "--batch-size", "16", "--precision", "float32",
          "--val-fraction", "0", "--ema-decay", "0.99", "--seed", "0", "-q"]
CASES = [("1 process, all cores", 1, None), ("1 process, 1 thread", 1, 1),
         ("2 processes, 1 thread each", 2, 1)]


def run_case(image: Path, processes: int, threads: int | None, steps: int) -> dict:
    """One training run of 2 epochs; the second epoch's throughput and the load."""
    from n2v_cascade.model import Model

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        args = [sys.executable, "-m", "n2v_cascade", "train", str(image), "-o", str(out),
                *RECIPE, "--epochs", "2", "--steps-per-epoch", str(steps)]
        if processes > 1:
            args += ["--processes", str(processes)]
        load_before = load_average()
        subprocess.run(args, env=env, check=True, timeout=3600)
        history = Model.load(out).history
    seconds = history[1]["seconds"] - history[0]["seconds"]
    batch = int(RECIPE[RECIPE.index("--batch-size") + 1])
    return {"patches_per_s": steps * batch / seconds, "epoch_s": seconds,
            "load_before": load_before, "load_after": load_average()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--steps", type=int, default=40, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    opts = parser.parse_args()
    info = machine_info()
    print(f"machine: {info.get('cpu')}, {os.cpu_count()} cores; image {opts.image.name}; "
          f"n2v U-Net d3 w32, 64x64 patches, global batch 16, {opts.steps} steps per epoch")
    rows = []
    for label, processes, threads in CASES:
        runs = [run_case(opts.image, processes, threads, opts.steps)
                for _ in range(opts.repeats)]
        rate = [r["patches_per_s"] for r in runs]
        loads = [r["load_before"] for r in runs] + [r["load_after"] for r in runs]
        rows.append({"case": label, "processes": processes, "threads": threads,
                     "patches_per_s": rate, "median": statistics.median(rate),
                     "load": [min(loads), max(loads)]})
        print(f"| {label} | {statistics.median(rate):.1f} patches/s "
              f"({', '.join(f'{x:.1f}' for x in rate)}) | load {min(loads):.1f}-"
              f"{max(loads):.1f} |", flush=True)
    if opts.json:
        opts.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
