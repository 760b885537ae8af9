"""Reliability (issue 6): bad inputs, output safety, Ctrl-C, SIGKILL and resume.

The catalogues below are tables: every row is one bad input fed to one entry point, and
every row must give exit code 2, exactly one ``error:`` line on stderr naming the file or
option and the problem, no traceback, and leave every file on disk as it was.
The interruption tests run ``n2v-cascade train`` as a subprocess (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from conftest import run_cli, tiny_config
from n2v_cascade import training as train_mod
from n2v_cascade.errors import ModelError
from n2v_cascade.model import Model
from n2v_cascade.training import train

TINY = ["--patch-size", "16", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "3",
        "--depth", "2", "--width", "8", "-q"]


def _noisy(shape: tuple[int, ...] = (48, 48), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + 20 * rng.standard_normal(shape)).astype(np.float32)


def _snapshot(*roots: Path) -> dict[str, tuple[bytes, int]]:
    """Every file and folder under ``roots`` with its bytes and mtime (to prove no writes)."""
    return {str(p): (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns)
            for root in roots for p in sorted(root.rglob("*"))}


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "n2v"
    train(_noisy(), tiny_config(epochs=1, steps_per_epoch=2), output_dir=path, progress=False)
    return path


# --- catalogue 1: bad image files x every command that reads images ----------------------


def _truncated(make: Callable[[Path], object]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        make(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return write


BAD_FILES: dict[str, tuple[Callable[[Path], object], str]] = {
    # name: (how to make it, what the message must say)
    "missing.tif": (lambda p: None, "no such file|file not found"),
    "nothing_here": (lambda p: p.mkdir(), "no image files|is a folder"),
    "empty.tif": (lambda p: p.write_bytes(b""), "file is empty"),
    "truncated.tif": (_truncated(lambda p: tifffile.imwrite(p, _noisy())), "not a readable TIFF"),
    "truncated.png": (_truncated(lambda p: iio.imwrite(p, _noisy().astype(np.uint8))),
                      "not a readable PNG"),
    "renamed_text.tif": (lambda p: p.write_text("just text\n"), "not a readable TIFF"),
    "picture.bmp": (lambda p: p.write_bytes(b"BM" + bytes(64)), "unsupported file type"),
    "line.npy": (lambda p: np.save(p, np.arange(9.0)), "has 1 dimension"),
    "five_d.npy": (lambda p: np.save(p, _noisy((2, 2, 2, 8, 8))),
                   "has 5 dimension|cannot tell the axes of a 5-D"),
    "nan.npy": (lambda p: np.save(p, np.where(np.eye(48) > 0, np.nan, _noisy())), "NaN/Inf"),
    "inf.tif": (lambda p: tifffile.imwrite(p, np.where(np.eye(48) > 0, np.inf, _noisy())),
                "NaN/Inf"),
    "constant.tif": (lambda p: tifffile.imwrite(p, np.full((48, 48), 7, np.uint16)), "constant"),
    "small.npy": (lambda p: np.save(p, _noisy((8, 8))), "smaller than the patch size 16"),
}
ENTRIES: dict[str, Callable[[Path, Path, Path], list[str]]] = {
    # entry point: (bad file, output folder, model) -> arguments
    "train": lambda bad, out, model: ["train", str(bad), "-o", str(out / "model"), *TINY],
    "cascade": lambda bad, out, model: ["cascade", str(bad), "-o", str(out / "cascade"),
                                        "--retrain-epochs", "1", *TINY],
    "denoise": lambda bad, out, model: ["denoise", str(bad), "-m", str(model), "-o", str(out)],
    "add-noise": lambda bad, out, model: ["add-noise", str(bad), "-o", str(out / "noisy.tif")],
    "evaluate": lambda bad, out, model: ["evaluate", str(bad), "-r", str(out.parent / "good.tif"),
                                         "--json", str(out / "m.json")],
    "evaluate-ref": lambda bad, out, model: ["evaluate", str(out.parent / "good.tif"), "-r",
                                             str(bad), "--csv", str(out / "m.csv")],
}
# Valid for some commands: evaluate scores constant images, only training needs patches,
# add-noise takes a flat field as its clean image.
FINE = {("constant.tif", "evaluate"), ("constant.tif", "evaluate-ref"),
        ("constant.tif", "add-noise")} | {("small.npy", e) for e in ENTRIES
                                          if e not in ("train", "cascade")}
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (file, entry) -> reason, run as strict xfail
_KNOWN = {key: pytest.mark.xfail(reason=why, strict=True) for key, why in KNOWN_BUGS.items()}
FILE_CASES = [pytest.param(name, entry, marks=_KNOWN[name, entry])
              if (name, entry) in KNOWN_BUGS else (name, entry)
              for name in BAD_FILES for entry in ENTRIES if (name, entry) not in FINE]


@pytest.mark.parametrize("name, entry", FILE_CASES)
def test_bad_file_catalogue(name: str, entry: str, tmp_path: Path, model_dir, capsys) -> None:
    make, problem = BAD_FILES[name]
    tifffile.imwrite(tmp_path / "good.tif", _noisy())
    bad = tmp_path / name
    make(bad)
    before = _snapshot(tmp_path, model_dir)
    code, _, err = run_cli(ENTRIES[entry](bad, tmp_path / "out", model_dir), capsys)
    assert code == 2
    line = _one_error_line(err)
    assert str(bad) in line
    assert any(word in line for word in problem.split("|")), line
    assert _snapshot(tmp_path, model_dir) == before


# --- catalogue 2: broken model folders, through the CLI and Model.load -----------------


def _edit(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_text(change((folder / name).read_text()))


BAD_MODELS: dict[str, tuple[Callable[[Path], object], str]] = {
    "folder missing": (lambda m: shutil.rmtree(m), "model folder not found"),
    "folder is a file": (lambda m: (shutil.rmtree(m), m.write_text("x")), "not found"),
    "weights missing": (lambda m: (m / "weights.pt").unlink(), "weights.pt is missing"),
    "incomplete save": (lambda m: (m / "model.json").unlink(), "training was interrupted"),
    "incomplete save, no checkpoint": (
        lambda m: ((m / "model.json").unlink(), (m / "checkpoint.pt").unlink()),
        "model.json is missing"),
    "weights garbage": (lambda m: (m / "weights.pt").write_bytes(b"\0" * 99),
                        "weights cannot be loaded"),
    "weights of another network": (
        _edit("config.yaml", lambda t: t.replace("width: 8", "width: 4")),
        "weights cannot be loaded"),
    "config not YAML": (lambda m: (m / "config.yaml").write_text("seed: [1,\n"),
                        "corrupt model metadata"),
    "config invalid": (_edit("config.yaml", lambda t: t.replace("epochs: 1", "epochs: -4")),
                       "corrupt model config"),
    "config a list": (lambda m: (m / "config.yaml").write_text("- 1\n"), "not a mapping"),
    "model.json not JSON": (lambda m: (m / "model.json").write_text("{"),
                            "corrupt model metadata"),
    "future format": (_edit("model.json", lambda t: t.replace('"format_version": 1',
                                                              '"format_version": 7')),
                      "format version 7 is not supported"),
    "no format": (lambda m: (m / "model.json").write_text(json.dumps({"history": []})),
                  "format version None is not supported"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_catalogue(case: str, tmp_path: Path, model_dir, capsys) -> None:
    damage, problem = BAD_MODELS[case]
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    damage(broken)
    tifffile.imwrite(tmp_path / "x.tif", _noisy())
    before = _snapshot(tmp_path)
    code, _, err = run_cli(["denoise", str(tmp_path / "x.tif"), "-m", str(broken), "-o",
                            str(tmp_path / "out.tif")], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert str(broken) in line and problem in line
    assert _snapshot(tmp_path) == before
    with pytest.raises(ModelError) as info:
        Model.load(broken)
    assert f"error: {info.value}" == line


# --- catalogue 3: nonsensical options ----------------------------------------------------

OPTION_CASES: list[tuple[str, list[str], str]] = [
    # (command, extra arguments, what the message must say); {d} is the test's folder
    ("train", ["--epochs", "-1"], "--epochs: Input should be greater than or equal to 1"),
    ("train", ["--epochs", "0"], "--epochs"),
    ("train", ["--batch-size", "0"], "--batch-size: Input should be greater than or equal to 1"),
    ("train", ["--patch-size", "18"], "patch_size 18 must be divisible by 2**depth = 4"),
    ("train", ["--variant", "n2v3"], "--variant: unknown method 'n2v3' (choose from n2v,"),
    ("train", ["--mask", "diagonal:3"], "--mask: unknown mask 'diagonal:3'"),
    ("train", ["--mask", "horizontal:4"], "--mask: struct span must be an odd number"),
    ("train", ["--mask-file", "{d}/missing.npy"], "missing.npy: not a readable .npy mask"),
    ("train", ["--mask-file", "{d}/even.npy"], "even.npy: kernel sides must be odd"),
    ("train", ["--learning-rate", "-0.1"], "--learning-rate: Input should be greater than 0"),
    ("train", ["--val-fraction", "0.95"], "--val-fraction"),
    ("train", ["--depth", "0"], "--depth"),
    ("train", ["--variant", "n2v", "--backbone", "blindspot"], "backbone 'blindspot' is not"),
    ("train", ["--config", "{d}/missing.yaml"], "missing.yaml: config file not found"),
    ("train", ["--config", "{d}/broken.yaml"], "broken.yaml: not valid YAML"),
    ("train", ["--config", "{d}/typo.yaml"], "typo.yaml: invalid configuration: epoch"),
    ("train", ["--epochs", "many"], "Invalid value for '--epochs'"),
    ("train", ["--bogus"], "No such option: --bogus"),
    ("denoise", ["--tile", "-1"], "--tile: must be >= 0"),
    ("denoise", ["--batch-size", "0"], "--batch-size: must be >= 1"),
    ("denoise", ["--overlap", "-2"], "--overlap: must be >= 0"),
    ("denoise", ["--uncertainty"], "--posterior/--uncertainty: variant 'structured' predicts no"),
    ("denoise", ["-o", "{d}/out.jpg"], "out.jpg: unsupported output type '.jpg'"),
    ("evaluate", ["--data-range", "-1"], "--data-range: must be a positive number"),
    ("evaluate", ["--json", "{d}/m.txt"], "m.txt: metrics file must end in .json or .csv"),
    ("evaluate", ["-r", "{d}/other.tif"], "has shape (48, 48) but the reference has shape"),
    ("add-noise", ["--noise", "gaussian:-3"], "--noise: invalid noise spec"),
    ("add-noise", ["--noise", "speckle:3"], "--noise: invalid noise spec"),
    ("add-noise", ["--seed", "-1"], "--seed: must be >= 0"),
    ("add-noise", ["-o", "{d}/noisy.jpg"], "noisy.jpg: unsupported output type '.jpg'"),
]
BASE_ARGS = {
    "train": ["train", "{d}/x.tif", "-o", "{d}/model", *TINY],
    "denoise": ["denoise", "{d}/x.tif", "-m", "{m}", "-o", "{d}/out.tif"],
    "evaluate": ["evaluate", "{d}/x.tif", "-r", "{d}/x.tif", "--json", "{d}/m.json"],
    "add-noise": ["add-noise", "{d}/x.tif", "-o", "{d}/noisy.tif"],
}


@pytest.mark.parametrize("command, extra, problem", OPTION_CASES,
                         ids=[f"{c}{' '.join(e)}" for c, e, _ in OPTION_CASES])
def test_bad_option_catalogue(command: str, extra: list[str], problem: str, tmp_path: Path,
                              model_dir, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy())
    tifffile.imwrite(tmp_path / "other.tif", _noisy((40, 48)))
    np.save(tmp_path / "even.npy", np.ones((2, 2), bool))
    (tmp_path / "broken.yaml").write_text("epochs: [\n")
    (tmp_path / "typo.yaml").write_text("epoch: 3\n")
    args = [a.format(d=tmp_path, m=model_dir) for a in [*BASE_ARGS[command], *extra]]
    before = _snapshot(tmp_path, model_dir)
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert problem in _one_error_line(err)
    assert _snapshot(tmp_path, model_dir) == before


# --- colour where grayscale is needed: averaged, with one warning line -------------------


@pytest.mark.parametrize("command", ["train", "denoise"])
def test_rgb_is_averaged_with_a_warning(command: str, tmp_path: Path, model_dir, capsys) -> None:
    rgb = np.clip(np.stack([_noisy(seed=s) for s in range(3)], axis=-1), 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    out = tmp_path / ("model" if command == "train" else "grey.tif")
    args = {"train": ["train", str(tmp_path / "rgb.png"), "-o", str(out), *TINY],
            "denoise": ["denoise", str(tmp_path / "rgb.png"), "-m", str(model_dir), "-o",
                        str(out), "-q"]}[command]  # -q: progress off, warnings kept
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert err.splitlines() == [f"warning: {tmp_path / 'rgb.png'}: has 3 colour channels; "
                                "averaging them to grayscale"]
    assert out.exists()


# --- output safety -------------------------------------------------------------------


def test_no_command_writes_to_its_inputs(tmp_path: Path, model_dir, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy())
    tifffile.imwrite(tmp_path / "ref.tif", _noisy(seed=1))
    d = str(tmp_path)
    inputs = _snapshot(tmp_path, model_dir)
    for args in (["train", f"{d}/x.tif", "-o", f"{d}/m", *TINY],
                 ["denoise", f"{d}/x.tif", "-m", str(model_dir), "-o", f"{d}/den.tif"],
                 ["evaluate", f"{d}/x.tif", "-r", f"{d}/ref.tif", "--json", f"{d}/e.json"],
                 ["add-noise", f"{d}/ref.tif", "-o", f"{d}/n.tif", "--noise", "poisson:9"]):
        code, _, err = run_cli(args, capsys)
        assert code == 0, err
    after = _snapshot(tmp_path, model_dir)
    assert {k: after[k] for k in inputs} == inputs
    assert {Path(k).name for k in set(after) - set(inputs)} >= {"m", "den.tif", "e.json", "n.tif"}


@pytest.mark.parametrize("command", ["denoise", "add-noise"])
@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_an_input_is_never_its_own_output(command: str, spelling: str, overwrite: list[str],
                                          tmp_path: Path, model_dir, capsys) -> None:
    x = tmp_path / "x.tif"
    tifffile.imwrite(x, _noisy())
    target = {"same": str(x), "dotted": f"{tmp_path}/./x.tif", "symlink": str(tmp_path / "l.tif"),
              "hardlink": str(tmp_path / "h.tif")}
    (tmp_path / "l.tif").symlink_to(x)
    os.link(x, tmp_path / "h.tif")
    before = _snapshot(tmp_path)
    tail = ["-m", str(model_dir)] if command == "denoise" else []
    code, _, err = run_cli([command, str(x), "-o", target[spelling], *tail, *overwrite], capsys)
    assert code == 2
    assert "is an input file; refusing to overwrite it" in _one_error_line(err)
    assert _snapshot(tmp_path) == before


def test_existing_outputs_need_overwrite(tmp_path: Path, model_dir, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy())
    d = str(tmp_path)
    (tmp_path / "old.json").write_text("old")
    (tmp_path / "old.tif").write_text("old")
    train(_noisy(), tiny_config(epochs=1, steps_per_epoch=1), output_dir=tmp_path / "m",
          progress=False)
    cases = [
        (["train", f"{d}/x.tif", "-o", f"{d}/m", *TINY], "already holds checkpoint.pt"),
        (["denoise", f"{d}/x.tif", "-m", str(model_dir), "-o", f"{d}/old.tif"], "--overwrite"),
        (["add-noise", f"{d}/x.tif", "-o", f"{d}/old.tif"], "already exists"),
        # the JSON would be new: it must not be written either when the CSV is refused
        (["evaluate", f"{d}/x.tif", "-r", f"{d}/x.tif", "--json", f"{d}/new.json", "--csv",
          f"{d}/old.csv"], "already exists"),
        (["evaluate", f"{d}/x.tif", "-r", f"{d}/x.tif", "--json", f"{d}/old.json"],
         "already exists"),
    ]
    (tmp_path / "old.csv").write_text("old")
    before = _snapshot(tmp_path, model_dir)
    for args, problem in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and problem in _one_error_line(err), args
    assert _snapshot(tmp_path, model_dir) == before
    code, _, err = run_cli(cases[1][0] + ["--overwrite"], capsys)
    assert code == 0 and tifffile.imread(tmp_path / "old.tif").shape == (48, 48)


def test_one_corrupt_file_in_a_folder(tmp_path: Path, model_dir, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    good = {"a": _noisy(seed=1), "c": _noisy((32, 40), seed=2), "d": _noisy(seed=3)}
    for stem, img in good.items():
        tifffile.imwrite(src / f"{stem}.tif", img)
    _truncated(lambda path: tifffile.imwrite(path, _noisy()))(src / "b.tif")
    before = _snapshot(src)
    code, out, err = run_cli(["denoise", str(src), "-m", str(model_dir), "-o",
                              str(tmp_path / "out"), "-q"], capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert f"{src / 'b.tif'}: not a readable TIFF file" in lines[0]
    assert lines[1] == f"error: 1 of 4 image(s) failed: {src / 'b.tif'}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_denoised.tif", "c_denoised.tif", "d_denoised.tif"]
    model = Model.load(model_dir)
    for stem, img in good.items():  # complete: exactly what denoising the file alone gives
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / f"{stem}_denoised.tif"),
                                      model.denoise(img))
    assert out == ""  # -q: nothing but the errors
    assert _snapshot(src) == before


def test_divergence_names_the_epoch(tmp_path: Path, monkeypatch, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy())
    calls = {"n": 0}
    original = train_mod._Loop._step

    def nan_in_epoch_two(self) -> float:
        calls["n"] += 1
        return float("nan") if calls["n"] == 4 else original(self)

    monkeypatch.setattr(train_mod._Loop, "_step", nan_in_epoch_two)
    code, _, err = run_cli(["train", str(tmp_path / "x.tif"), "-o", str(tmp_path / "m"),
                            *TINY, "--epochs", "2"], capsys)
    assert code == 2
    line = _one_error_line(err)
    assert "training diverged at epoch 2, step 1" in line and "--learning-rate" in line
    assert not (tmp_path / "m" / "model.json").exists()


# --- interruption: Ctrl-C and SIGKILL of a real `n2v-cascade train` process -------------
# Same thread count in every run (resume is bit-identical for a given torch build and
# thread count; see docs/RELIABILITY.md). Epochs are long enough to land kills inside them.

# the precision is given: ``auto`` times bfloat16 against float32, and on a busy CPU near
# the threshold two runs could choose differently
RUN = ["--patch-size", "16", "--batch-size", "4", "--epochs", "4", "--steps-per-epoch", "25",
       "--depth", "2", "--width", "8", "--seed", "3", "--precision", "float32", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "n2v_cascade.cli", "train", str(data), "-o", str(out), *RUN]
    return subprocess.Popen([*cmd, *extra], env=ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"training ended first: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def _checkpoint_epoch(out: Path) -> int:
    """After a kill: no half file -- the checkpoint loads, only hidden temp files besides."""
    assert not (out / "model.json").exists()
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} <= {"checkpoint.pt"}
    assert all(".tmp-" in p.name for p in out.iterdir() if p.name.startswith("."))
    return torch.load(out / "checkpoint.pt", weights_only=False)["state"]["epoch"]


def _same_as(reference: Path, out: Path) -> None:
    want = torch.load(reference / "weights.pt", weights_only=True)
    got = torch.load(out / "weights.pt", weights_only=True)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    losses = [[h["train_loss"] for h in json.loads((p / "model.json").read_text())["history"]]
              for p in (reference, out)]
    assert losses[0] == losses[1] and len(losses[0]) == 4


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path, float]:
    """(data file, model folder, seconds of epoch 1) of a run that was left alone."""
    root = tmp_path_factory.mktemp("kill")
    tifffile.imwrite(root / "data.tif", _noisy((64, 64), seed=5))
    code, err = _finish(_start(root / "data.tif", root / "reference"))
    assert code == 0, err
    history = json.loads((root / "reference" / "model.json").read_text())["history"]
    return root / "data.tif", root / "reference", history[0]["seconds"]


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path: Path, uninterrupted) -> None:
    data, reference, _ = uninterrupted
    out = tmp_path / "m"
    proc = _start(data, out)
    _wait_until((out / "checkpoint.pt").exists, proc)
    proc.send_signal(signal.SIGINT)
    code, err = _finish(proc)
    assert code == 130
    assert err.startswith("stopped: interrupted at epoch") and "continue with --resume" in err
    assert len(err.splitlines()) == 1
    assert _checkpoint_epoch(out) >= 1
    code, err = _finish(_start(data, out, "--resume"))
    assert code == 0, err
    _same_as(reference, out)


def test_sigkill_anywhere_then_resume_is_bit_identical(tmp_path: Path, uninterrupted) -> None:
    data, reference, epoch_seconds = uninterrupted
    out, ckpt = tmp_path / "m", tmp_path / "m" / "checkpoint.pt"
    # 1. mid-epoch 2: a while after the first checkpoint appeared
    proc = _start(data, out)
    _wait_until(ckpt.exists, proc)
    time.sleep(0.2 * epoch_seconds)  # a few steps into epoch 2
    _kill(proc)
    assert _checkpoint_epoch(out) == 1
    # 2. right after epoch 2 ended (the checkpoint changes)
    seen = _mtime(ckpt)
    proc = _start(data, out, "--resume")
    _wait_until(lambda: _mtime(ckpt) != seen, proc)
    _kill(proc)
    assert _checkpoint_epoch(out) == 2
    # 3. at a random (seeded) moment: importing, training or writing
    proc = _start(data, out, "--resume")
    time.sleep(random.Random(6).uniform(0.2, 2.0))
    _kill(proc)
    if not (out / "model.json").exists():  # it may have finished first on a fast machine
        assert _checkpoint_epoch(out) >= 2
    # a temp file left by a write that was killed: removed by the next run
    stale = out / ".checkpoint.pt.tmp-0123456789abcdef.pt"
    stale.write_bytes(b"half a checkpoint")
    code, err = _finish(_start(data, out, "--resume"))
    assert code == 0, err
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    _same_as(reference, out)


def test_sigkill_before_the_first_checkpoint(tmp_path: Path, uninterrupted) -> None:
    data, reference, _ = uninterrupted
    out = tmp_path / "m"
    proc = _start(data, out)
    _wait_until(out.is_dir, proc)  # created just before the first step
    _kill(proc)
    assert not (out / "checkpoint.pt").exists()
    code, err = _finish(_start(data, out, "--resume"))
    assert code == 0, err
    assert f"warning: {out}: no checkpoint.pt to resume from; starting from scratch" in err
    _same_as(reference, out)
