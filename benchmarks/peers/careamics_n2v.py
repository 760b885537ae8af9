"""CAREamics N2V as a peer, run in its own venv (``make peers-env``) through a subprocess.

Our environment never imports CAREamics: the images go to a temporary folder as ``.npy``
files, ``careamics_runner.py`` trains and predicts with the peers venv's python, and the
predictions and a JSON summary come back the same way. The venv's python is
``.venv-peers/bin/python`` at the repository root, or ``$N2V_PEERS_PYTHON``.

Settings (stated in the report): CAREamics' N2V defaults (U-Net depth 2, 32 initial
channels, mean/std normalisation, flips and 90-degree rotations, 8 validation patches,
ReduceLROnPlateau, N2V pixel manipulation with a 11x11 region, 20% of pixels per patch),
except 64x64 patches and batch 8 (our recipe's sizes) and no data-loader workers;
prediction in 256x256 tiles with 48 pixels overlap.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "careamics_runner.py"
PREFIX = "careamics-runner:"
SETTINGS = ("CAREamics N2V defaults (U-Net depth 2, 32 channels), 64x64 patches, batch 8, "
            "no workers; 256x256 tiles")


class Unavailable(RuntimeError):
    """CAREamics could not run; the message is one line saying why."""


def python() -> Path:
    """The peers venv's interpreter."""
    return Path(os.environ.get("N2V_PEERS_PYTHON", ROOT / ".venv-peers" / "bin" / "python"))


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = python()
    if not exe.exists():
        raise Unavailable(f"no peers venv at {exe}: run `make peers-env`")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        return subprocess.run([str(exe), str(RUNNER), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"CAREamics runner timed out after {timeout:.0f} s") from exc


def _reason(proc: subprocess.CompletedProcess) -> str:
    """The runner's one-line reason, or the last line it printed."""
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(PREFIX):
            return ln[len(PREFIX):].strip()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def check(timeout: float = 300.0) -> str:
    """``careamics X ready (torch Y)``; raises :class:`Unavailable` with the reason."""
    proc = _run(["--check"], timeout)
    if proc.returncode != 0:
        raise Unavailable(_reason(proc))
    return proc.stdout.strip().splitlines()[-1]


def train_predict(images: list[np.ndarray], *, seconds: float | None = None,
                  max_steps: int | None = None, threads: int = 1, seed: int = 0,
                  timeout: float | None = None) -> tuple[list[np.ndarray], dict]:
    """Train one CAREamics N2V model on ``images`` and predict them.

    Returns the predictions (float32, the images' shapes) and the runner's summary
    (versions, steps, training CPU seconds per thread, prediction seconds).
    """
    if seconds is None and max_steps is None:
        raise ValueError("give seconds or max_steps")
    args = ["--threads", str(threads), "--seed", str(seed)]
    if seconds is not None:
        args += ["--seconds", str(seconds)]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    # start-up, validation, checkpoints and prediction on top of the training budget
    limit = timeout or 600.0 + 4.0 * (seconds or 0.0)
    with tempfile.TemporaryDirectory(prefix="careamics-") as tmp:
        folder = Path(tmp)
        for i, img in enumerate(images):
            np.save(folder / f"input_{i:03d}.npy", np.asarray(img, dtype=np.float32))
        proc = _run([*args, "--data", str(folder)], limit)
        if proc.returncode != 0:
            raise Unavailable(_reason(proc))
        summary = json.loads((folder / "summary.json").read_text())
        outputs = [np.load(folder / f"output_{i:03d}.npy") for i in range(len(images))]
    return outputs, summary
