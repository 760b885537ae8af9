"""Train CAREamics N2V on a group of images and predict them; run by the peers venv only.

``.venv-peers/bin/python benchmarks/peers/careamics_runner.py --data DIR [options]``
reads ``DIR/input_000.npy, ...`` (2-D float32 images), trains one CAREamics N2V model on
all of them for ``--seconds`` of training-step CPU time per torch thread (the benchmark's
clock: validation and checkpointing between epochs are not counted) or ``--max-steps``
steps, predicts every image (tiled) and writes ``DIR/output_000.npy, ...`` and
``DIR/summary.json``. ``--check`` only imports CAREamics and prints one line.

The script imports nothing from this repository (the peers venv has only CAREamics and
its dependencies); the benchmark talks to it through files and the exit status. Any
failure is printed as one line starting with ``careamics-runner:`` on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "careamics-runner:"


def _fail(msg: str) -> None:
    print(f"{PREFIX} {' '.join(str(msg).split())}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _import_careamics():
    try:
        import careamics
        from careamics import CAREamist
        from careamics.config import create_advanced_n2v_config
    except Exception as exc:  # noqa: BLE001 - any import failure is reported in one line
        hint = (" (CAREamics imports torchvision; the registry's torchvision wheels are "
                "built against CUDA torch and cannot load beside a CPU-only torch)"
                if "torchvision" in f"{exc}" else "")
        _fail(f"cannot import careamics: {type(exc).__name__}: {exc}{hint}")
    return careamics, CAREamist, create_advanced_n2v_config


def _budget_callback(seconds: float | None, threads: int):
    """A Lightning callback: sums per-step CPU time, stops training at the budget."""
    from lightning.pytorch.callbacks import Callback

    class CpuBudget(Callback):
        def __init__(self) -> None:
            self.used = 0.0
            self.wall = 0.0
            self.steps = 0
            self._cpu = self._wall = 0.0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._cpu, self._wall = time.process_time(), time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            cpu, wall = time.process_time(), time.perf_counter()
            # from the previous step's end: includes drawing and masking this batch
            self.used += (cpu - self._cpu) / threads
            self.wall += wall - self._wall
            self._cpu, self._wall = cpu, wall
            self.steps += 1
            if seconds is not None and self.used >= seconds:
                trainer.should_stop = True

    return CpuBudget()


def run(args: argparse.Namespace) -> dict:
    """Train on the inputs in ``args.data`` and write the predictions; return a summary."""
    careamics, CAREamist, create_config = _import_careamics()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    files = sorted(data.glob("input_*.npy"))
    if not files:
        _fail(f"no input_*.npy in {data}")
    images = [np.load(f).astype(np.float32) for f in files]
    epochs = args.max_epochs
    steps_per_epoch = args.steps_per_epoch
    if args.max_steps is not None:
        epochs = max(1, -(-args.max_steps // steps_per_epoch))
    config = create_config(
        experiment_name="peers", data_type="array", axes="YX",
        patch_size=[args.patch, args.patch], batch_size=args.batch, num_epochs=epochs,
        num_steps=steps_per_epoch, num_workers=0, logger="none",
        seed=args.seed + 1,  # CAREamics seeds must be positive
        trainer_params={"accelerator": "cpu", "devices": 1,
                        "max_steps": args.max_steps if args.max_steps else -1})
    clock = _budget_callback(args.seconds, args.threads)
    with tempfile.TemporaryDirectory() as work:
        model = CAREamist(config, work_dir=work, callbacks=[clock], enable_progress_bar=False)
        t0 = time.perf_counter()
        model.train(train_data=images)
        train_total_wall = time.perf_counter() - t0
        c0, w0 = time.process_time(), time.perf_counter()
        preds, _ = model.predict(pred_data=images, tile_size=(args.tile, args.tile),
                                 tile_overlap=(48, 48))
        predict_s = (time.process_time() - c0) / args.threads
        predict_wall = time.perf_counter() - w0
    if len(preds) != len(images):
        _fail(f"{len(preds)} predictions for {len(images)} images")
    for f, img, pred in zip(files, images, preds, strict=True):
        out = np.squeeze(np.asarray(pred, dtype=np.float32))
        if out.shape != img.shape:
            _fail(f"prediction shape {out.shape} for an image of shape {img.shape}")
        np.save(data / f.name.replace("input_", "output_"), out)
    params = sum(p.numel() for p in model.model.parameters())
    return {"careamics": careamics.__version__, "torch": torch.__version__,
            "steps": clock.steps, "train_s": clock.used, "train_wall_s": clock.wall,
            "train_total_wall_s": train_total_wall, "predict_s": predict_s,
            "predict_wall_s": predict_wall, "params": params, "patch": args.patch,
            "batch": args.batch, "steps_per_epoch": steps_per_epoch}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only import CAREamics")
    parser.add_argument("--data", help="folder with input_*.npy; outputs are written there")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training-step CPU seconds per torch thread")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=100_000)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.check:
        careamics, _, _ = _import_careamics()
        import torch

        print(f"careamics {careamics.__version__} ready (torch {torch.__version__})")
        return
    if not args.data:
        _fail("--data is required")
    if args.seconds is None and args.max_steps is None:
        _fail("give --seconds or --max-steps")
    try:
        summary = run(args)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - reported in one line to the benchmark
        _fail(f"{type(exc).__name__}: {exc}")
    (Path(args.data) / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
