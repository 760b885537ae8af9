"""``python -m benchmarks.renoise TYPE``: the default method, then a ``renoise`` stage.

One model of the default recipe per FMD microscope type (``Confocal``, ``TwoPhoton``,
``WideField``: all its frames) for the first budget of training-step CPU seconds; its
network estimate is the pseudo-clean target of a ``renoise`` stage trained for the
second budget on the same frames (with the noisy frames beside it), which then denoises
the noisy frames. Both are scored per frame against the 50-frame averages; rows go to
``benchmarks/out/renoise/<type><tag>.jsonl`` and a summary by frame number (tuning on
frames 1-2, reporting on 3-4) is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import datasets
from benchmarks.targets import psnr
from benchmarks.training import StepClock
from n2v_cascade import train
from n2v_cascade.config import make_config
from n2v_cascade.stages import stage_config

OUT = Path(__file__).resolve().parent / "out" / "renoise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("type", choices=("Confocal", "TwoPhoton", "WideField"))
    parser.add_argument("--budgets", default="120,60", help="CPU s of stage 1, stage 2")
    parser.add_argument("--stage2", default="{}", help="JSON config values of stage 2")
    parser.add_argument("--tag", default="")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    b1, b2 = (float(b) for b in args.budgets.split(","))
    ds = datasets.fmd(False)
    idx = [i for i, n in enumerate(ds.names) if n.startswith(args.type + "_")]
    names = [ds.names[i] for i in idx]
    noisy = [ds.noisy[i] for i in idx]
    clean = [ds.clean[i] for i in idx]
    recipe = {"epochs": 1, "steps_per_epoch": 100000, "seed": args.seed}
    clock1 = StepClock(b1)
    first = train(noisy, make_config("stage 1", **recipe), progress=False, callbacks=[clock1])
    target = [first.denoise(x, blend="none") for x in noisy]
    default = [first.denoise(x) for x in noisy]
    second_out = target
    clock2 = StepClock(b2)
    if b2 > 0:
        cfg = stage_config({"variant": "renoise", **recipe, **json.loads(args.stage2)}, 1)
        t0 = time.perf_counter()
        second = train(target, cfg, progress=False, callbacks=[clock2], noisy=noisy)
        print(f"stage 2: {clock2.steps} steps in {time.perf_counter() - t0:.0f} s")
        second_out = [second.denoise(x) for x in noisy]
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    with (OUT / f"{args.type}{args.tag}.jsonl").open("w") as fh:
        for name, x, gt, d, s in zip(names, noisy, clean, default, second_out, strict=True):
            row = {"frame": name, "noisy": psnr(x, gt), "stage1": psnr(d, gt),
                   "stage2": psnr(s, gt), "budgets": [b1, b2],
                   "steps": [clock1.steps, clock2.steps], "stage2_config": args.stage2}
            rows.append(row)
            fh.write(json.dumps(row) + "\n")
    for part, frames in (("frames 1-2", ("1", "2")), ("frames 3-4", ("3", "4"))):
        sel = [r for r in rows if r["frame"].rsplit("_", 1)[1] in frames]
        print(f"{args.type}{args.tag} {part}: stage 1 "
              f"{np.mean([r['stage1'] for r in sel]):.2f}, stage 2 "
              f"{np.mean([r['stage2'] for r in sel]):.2f} dB ({len(sel)} frames)")


if __name__ == "__main__":
    main()
