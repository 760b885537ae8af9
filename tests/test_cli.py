"""The command line end to end: help texts, the happy paths, and the structN2V options.

Everything runs in-process through ``cli.main`` on tiny images and tiny networks, so the
whole file takes a few seconds. Bad inputs and interruptions live in test_reliability.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import typer.main
import yaml

from conftest import run_cli, tiny_config
from n2v_cascade.cli import app
from n2v_cascade.io import read_image
from n2v_cascade.training import train

TINY = ["--patch-size", "16", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "3",
        "--depth", "2", "--width", "8", "-q"]


def _commands() -> dict[str, list[str]]:
    """Each registered command with its long option names (read from the app itself)."""
    group = typer.main.get_command(app)
    return {
        name: [o for p in cmd.params if p.param_type_name == "option"
               for o in p.opts if o.startswith("--")]
        for name, cmd in group.commands.items()
    }


def _noisy(shape: tuple[int, ...] = (48, 48), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0: shape[-2], 0: shape[-1]]
    clean = 100 + 40 * np.sin(x / 5.0) * np.cos(y / 7.0)
    return (clean + rng.normal(0, 10, shape)).astype(np.float32)


@pytest.fixture(scope="module")
def prob_model(tmp_path_factory) -> Path:
    """A tiny probabilistic model folder (trained through the API to save time)."""
    path = tmp_path_factory.mktemp("prob") / "model"
    train(_noisy(), tiny_config(epochs=1, steps_per_epoch=3, variant="probabilistic"),
          output_dir=path, progress=False)
    return path


# --- help ------------------------------------------------------------------------------


def test_top_level_help_lists_every_command(capsys) -> None:
    code, out, err = run_cli(["--help"], capsys)
    assert code == 0 and not err
    for name in _commands():
        assert name in out


@pytest.mark.parametrize("command", sorted(_commands()))
def test_command_help_mentions_every_option(command: str, capsys) -> None:
    code, out, err = run_cli([command, "--help"], capsys)
    assert code == 0 and not err
    assert "Usage:" in out
    missing = [opt for opt in _commands()[command] if opt not in out]
    assert not missing, f"{command} --help does not mention {missing}"


def test_core_commands_are_registered() -> None:
    """The commands the README documents must stay registered under these names."""
    assert {"train", "denoise", "evaluate", "add-noise", "demo"} <= set(_commands())


# A fresh interpreter runs the CLI on help and argument errors, then reports which heavy
# modules were imported: none of them may be, so these answers come back in well under a
# second instead of after torch's import.
_STARTUP = """
import json, sys
from n2v_cascade.cli import main
heavy = ("torch", "matplotlib", "skimage")
loaded = {"import": [m for m in heavy if m in sys.modules]}
for args in sys.argv[1:]:
    sys.argv = ["n2v-cascade", *args.split()]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    loaded[args] = [code, [m for m in heavy if m in sys.modules]]
print(json.dumps(loaded))
"""


def test_help_and_argument_errors_import_no_heavy_module(tmp_path: Path) -> None:
    import subprocess
    import sys

    calls = ["--help", "train --help", "train missing.tif -o m", "denoise --bogus",
             "denoise missing.tif -m m -o x.tif", "cascade missing.tif -o c",
             "add-noise missing.tif -o n.tif", "train"]
    proc = subprocess.run([sys.executable, "-c", _STARTUP, *calls], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report.pop("import") == []
    assert report == {c: [0 if "help" in c else 2, []] for c in calls}, proc.stderr
    assert "Usage:" in proc.stdout and "missing.tif: no such file" in proc.stderr
    assert not list(tmp_path.iterdir())


# --- happy paths -----------------------------------------------------------------------


def test_add_noise_train_denoise_evaluate(tmp_path: Path, capsys) -> None:
    clean = _noisy() - np.random.default_rng(9).normal(0, 10, (48, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "clean.tif", clean)

    code, out, err = run_cli(["add-noise", str(tmp_path / "clean.tif"), "-o",
                              str(tmp_path / "noisy.tif"), "--noise", "gaussian:10",
                              "--seed", "3"], capsys)
    assert code == 0, err
    assert "wrote" in out and "seed 3" in out
    noisy = read_image(tmp_path / "noisy.tif")
    assert noisy.shape == clean.shape and 5 < float(np.std(noisy - clean)) < 15

    model = tmp_path / "model"
    code, out, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(model),
                              *TINY[:-1]], capsys)  # not quiet: says where the model went
    assert code == 0, err
    assert f"model saved to {model}" in out
    assert {p.name for p in model.iterdir()} == {
        "checkpoint.pt", "weights.pt", "config.yaml", "model.json"}
    meta = json.loads((model / "model.json").read_text())
    assert len(meta["history"]) == 1

    code, out, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "-m", str(model), "-o",
                              str(tmp_path / "den.tif"), "-q"], capsys)
    assert code == 0, err
    den = tifffile.imread(tmp_path / "den.tif")
    assert den.dtype == np.float32 and den.shape == clean.shape and np.isfinite(den).all()

    json_out, csv_out = tmp_path / "m.json", tmp_path / "m.csv"
    code, out, err = run_cli(["evaluate", str(tmp_path / "noisy.tif"), str(tmp_path / "den.tif"),
                              "-r", str(tmp_path / "clean.tif"), "--json", str(json_out),
                              "--csv", str(csv_out)], capsys)
    assert code == 0, err
    rows = json.loads(json_out.read_text())
    assert [r["image"] for r in rows] == ["noisy.tif", "den.tif"]
    assert all({"mse", "psnr", "ssim", "data_range"} <= set(r) for r in rows)
    with csv_out.open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["image"] for r in table] == ["noisy.tif", "den.tif"]
    assert float(table[0]["psnr"]) == pytest.approx(rows[0]["psnr"], rel=1e-6)
    assert "psnr" in out and "den.tif" in out  # the table is printed too


def test_denoise_folder_writes_one_output_per_image(tmp_path: Path, prob_model, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", _noisy(seed=1))
    tifffile.imwrite(src / "stack.tif", np.stack([_noisy(seed=2), _noisy(seed=3)]))
    iio.imwrite(src / "c.png", np.clip(_noisy((40, 56), seed=4), 0, 255).astype(np.uint8))
    np.save(src / "d.npy", _noisy((20, 24), seed=5).astype(np.uint16))
    np.save(src / "tiny.npy", _noisy((5, 7), seed=6))  # smaller than a patch: still fine
    (src / "notes.txt").write_text("not an image")
    (src / ".hidden.tif").write_bytes(b"ignored")

    code, out, err = run_cli(["denoise", str(src), "-m", str(prob_model), "-o",
                              str(tmp_path / "out"), "-q", "--tta"], capsys)
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    stems = ["a", "c", "d", "stack", "tiny"]
    assert written == [f"{s}_denoised.tif" for s in stems]
    for stem in stems:
        source = next(src.glob(f"{stem}.*"))
        got = read_image(tmp_path / "out" / f"{stem}_denoised.tif")
        assert got.shape == read_image(source).shape and np.isfinite(got).all()
    assert out == "" and err == ""  # -q: nothing but errors


@pytest.mark.parametrize("flags", [["--uncertainty"], ["--posterior", "--uncertainty"]])
def test_uncertainty_writes_std(tmp_path: Path, prob_model, flags, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy(seed=7))
    code, out, err = run_cli(["denoise", str(tmp_path / "x.tif"), "-m", str(prob_model), "-o",
                              str(tmp_path / "x_out.tif"), *flags], capsys)
    assert code == 0, err
    mean = read_image(tmp_path / "x_out.tif")
    std = read_image(tmp_path / "x_out_std.tif", allow_constant=True)
    assert mean.shape == std.shape == (48, 48)
    assert np.isfinite(std).all() and (std >= 0).all()
    assert "x_out_std.tif" in out


def test_posterior_alone_writes_only_the_mean(tmp_path: Path, prob_model, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy(seed=8))
    code, _, err = run_cli(["denoise", str(tmp_path / "x.tif"), "-m", str(prob_model), "-o",
                            str(tmp_path / "post.tif"), "-q", "--posterior"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.tif", "x.tif"]
    assert "warning:" in err and "posterior" in err  # masked U-Net: approximate posterior


def test_struct_mask_option(tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "n.tif", _noisy())
    model = tmp_path / "m"
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(model), "--variant",
                            "structured", "--mask", "horizontal:5", *TINY], capsys)
    assert code == 0, err
    saved = yaml.safe_load((model / "config.yaml").read_text())
    assert saved["variant"] == "structured" and saved["mask"]["struct"] == "horizontal:5"
    assert saved["mask"]["pattern"] == "grid"
    code, _, err = run_cli(["denoise", str(tmp_path / "n.tif"), "-m", str(model), "-o",
                            str(tmp_path / "d.tif"), "-q"], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "d.tif").shape == (48, 48)


def test_struct_auto_box_and_none_options(tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "n.tif", _noisy())  # white noise
    for given, stored in (([], None), (["--mask", "box:3"], "box:3"),
                          (["--mask", "none"], None), (["--mask", "auto"], None)):
        model = tmp_path / f"m-{'-'.join(given)}"
        code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(model), *given,
                                *TINY], capsys)
        assert code == 0, err
        saved = yaml.safe_load((model / "config.yaml").read_text())
        assert saved["mask"]["struct"] == stored, given  # "auto" is resolved before saving
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(tmp_path / "bad"),
                            "--mask", "box:4", *TINY], capsys)
    assert code == 2 and "box:4" in err and "Traceback" not in err


def test_mask_file_option(tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "n.tif", _noisy())
    kernel = np.zeros((3, 5), dtype=bool)
    kernel[1, :] = True
    kernel[0, 2] = True
    np.save(tmp_path / "kernel.npy", kernel)
    model = tmp_path / "m"
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(model), "--mask-file",
                            str(tmp_path / "kernel.npy"), "--mask", "grid", *TINY], capsys)
    assert code == 0, err
    saved = yaml.safe_load((model / "config.yaml").read_text())
    assert saved["mask"]["struct_kernel"] == kernel.tolist()
    assert saved["mask"]["pattern"] == "grid"


def test_options_reach_the_config(tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "n.tif", _noisy())
    (tmp_path / "base.yaml").write_text("learning_rate: 0.0005\nseed: 4\n")
    model = tmp_path / "m"
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(model), "--config",
                            str(tmp_path / "base.yaml"), "--seed", "5", "--variant", "n2v2",
                            "--mask-fraction", "0.05", "--val-fraction", "0.2",
                            "--ema-decay", "0.99", *TINY], capsys)
    assert code == 0, err
    saved = yaml.safe_load((model / "config.yaml").read_text())
    assert saved["learning_rate"] == 0.0005  # from the file
    assert saved["seed"] == 5  # the option wins over the file
    assert saved["mask"]["fraction"] == 0.05 and saved["mask"]["replacement"] == "median"
    assert saved["network"] == {"depth": 2, "width": 8, "growth": 1.0, "blind_radius": 0,
                                "ring_residual": False}
    assert saved["ema_decay"] == 0.99


def test_blind_radius_option(tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "n.tif", _noisy())
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(tmp_path / "m"),
                            "--variant", "blindspot", "--blind-radius", "1", *TINY], capsys)
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "m" / "config.yaml").read_text())
    assert saved["network"]["blind_radius"] == 1
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(tmp_path / "a"),
                            "--variant", "blindspot", "--blind-radius", "auto", *TINY], capsys)
    assert code == 0, err  # resolved from the (white) noise of the image: the pixel only
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["network"][
        "blind_radius"] == 0
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(tmp_path / "x"),
                            "--variant", "blindspot", "--blind-radius", "two", *TINY], capsys)
    assert code == 2 and "--blind-radius" in err and "'two'" in err
    assert not (tmp_path / "x").exists()
    # a masked variant has no blind spot to widen: refused, naming the option
    code, _, err = run_cli(["train", str(tmp_path / "n.tif"), "-o", str(tmp_path / "u"),
                            "--blind-radius", "1", *TINY], capsys)
    assert code == 2 and "--blind-radius: needs the blind-spot backbone" in err
    assert not (tmp_path / "u").exists()


def test_overwrite_replaces_outputs(tmp_path: Path, prob_model, capsys) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _noisy(seed=10))
    (tmp_path / "y.tif").write_bytes(b"old")
    args = ["denoise", str(tmp_path / "x.tif"), "-m", str(prob_model), "-o",
            str(tmp_path / "y.tif"), "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "y.tif").read_bytes() == b"old"
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert read_image(tmp_path / "y.tif").shape == (48, 48)


@pytest.mark.filterwarnings("ignore:posterior mean with a masked U-Net")
def test_noise_from_image_estimates_on_each_image(tmp_path: Path, prob_model, capsys) -> None:
    # images from another microscope: the posterior must use that image's noise level,
    # not the one stored from the training data
    from n2v_cascade.errors import InputError
    from n2v_cascade.model import Model
    from n2v_cascade.noise import bootstrap_noise_model, estimate_gaussian_sigma

    rng = np.random.default_rng(3)
    clean = np.tile(np.linspace(50, 150, 48, dtype=np.float32), (48, 1))
    image = (clean + rng.normal(0, 40, clean.shape)).astype(np.float32)
    tifffile.imwrite(tmp_path / "other.tif", image)
    model = Model.load(prob_model)
    sigma = estimate_gaussian_sigma(image)
    assert abs(sigma - 40) < 4 and abs(model.noise["sigma"] - 40) > 10  # the test's premise
    code, _, err = run_cli(["denoise", str(tmp_path / "other.tif"), "-m", str(prob_model),
                            "-o", str(tmp_path / "post.tif"), "-q", "--posterior",
                            "--noise-from", "image"], capsys)
    assert code == 0, err
    expected = model.denoise(image, posterior=True,
                             noise_model={"kind": "gaussian", "sigma": sigma})
    stored = model.denoise(image, posterior=True)
    got = read_image(tmp_path / "post.tif")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert np.abs(got - stored).max() > 1.0
    with pytest.raises(InputError, match="noise_model must be"):
        model.denoise(image, posterior=True, noise_model="guess")
    code, _, err = run_cli(["denoise", str(tmp_path / "other.tif"), "-m", str(prob_model),
                            "-o", str(tmp_path / "p2.tif"), "--posterior", "--noise-from",
                            "guess"], capsys)
    assert code == 2 and "--noise-from: expected stored, image or bootstrap" in err
    assert not (tmp_path / "p2.tif").exists()
    # bootstrap: fitted to this image's residual from the prior mean
    code, _, err = run_cli(["denoise", str(tmp_path / "other.tif"), "-m", str(prob_model),
                            "-o", str(tmp_path / "p3.tif"), "-q", "--posterior",
                            "--noise-from", "bootstrap"], capsys)
    assert code == 0, err
    prior = model.predict(image)["mean"]
    boot = bootstrap_noise_model(image, prior, "gaussian")
    np.testing.assert_allclose(
        read_image(tmp_path / "p3.tif"),
        model.denoise(image, posterior=True, noise_model=boot), rtol=1e-5, atol=1e-4)


def test_resume_takes_the_recipe_from_the_folder(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "noisy.tif", rng.normal(100, 10, (48, 48)).astype(np.float32))
    tiny = ["--patch-size", "16", "--depth", "1", "--width", "4", "--epochs", "2",
            "--steps-per-epoch", "3", "-q"]
    out = tmp_path / "m"
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(out), "--variant",
                            "probabilistic", "--backbone", "blindspot", "--time-limit", "1e-9",
                            *tiny], capsys)
    assert code == 0, err
    assert json.loads((out / "model.json").read_text())["history"][-1]["stopped"]
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(out),
                            "--resume", "--variant", "n2v", *tiny], capsys)
    assert code == 2 and "different config" in err and "variant" in err
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(out),
                            "--resume", "-q"], capsys)  # no recipe options repeated
    assert code == 0, err
    meta = json.loads((out / "model.json").read_text())
    assert meta["variant"] == "probabilistic-blindspot"
    assert [h.get("stopped") for h in meta["history"]] == [None, None]
