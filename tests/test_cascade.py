"""Cascades: artefacts, resume, inference-only, the GT-free estimate, auto mode, CLI errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import ndimage

from conftest import run_cli, tiny_config
from n2v_cascade import stages as stages_mod
from n2v_cascade.cascade import (
    Cascade,
    GTFreeOptions,
    SelfSupervisedError,
    gt_free_errors,
    stage_config,
)
from n2v_cascade.errors import InputError
from n2v_cascade.io import read_image, write_image
from n2v_cascade.training import train

TINY = ["--epochs", "1", "--retrain-epochs", "1", "--patch-size", "16", "--depth", "2",
        "--width", "8", "--steps-per-epoch", "3", "--batch-size", "4", "-q"]


def _tiny_cascade(stages=("structured", "probabilistic"), **kw) -> Cascade:
    return Cascade(list(stages), base=tiny_config(epochs=1, steps_per_epoch=3), epochs=1,
                   retrain_epochs=1, **kw)


@pytest.fixture
def spy_train(monkeypatch):
    """Record every call of the training function made by the cascade."""
    calls: list[dict] = []
    real = stages_mod.train

    def spy(images, config, **kw):
        calls.append({"images": images, "config": config, **kw})
        return real(images, config, **kw)

    monkeypatch.setattr(stages_mod, "train", spy)
    return calls


@pytest.fixture
def files(tmp_path, noisy_pair):
    clean, noisy = noisy_pair
    write_image(tmp_path / "clean.tif", clean)
    write_image(tmp_path / "noisy.tif", noisy)
    return tmp_path / "noisy.tif", tmp_path / "clean.tif"


def test_two_stage_cascade_writes_all_artefacts(tmp_path, noisy_pair, spy_train) -> None:
    clean, noisy = noisy_pair
    out = tmp_path / "out"
    casc = _tiny_cascade().fit(noisy, output_dir=out, reference=clean, progress=False)
    s1, s2 = out / "stage1-structured", out / "stage2-probabilistic"
    for path in (s1 / "model" / "model.json", s1 / "image.tif", s2 / "model" / "weights.pt",
                 s2 / "image.tif", s2 / "image_std.tif"):
        assert path.is_file(), path
    assert not (s1 / "image_std.tif").exists()
    manifest = json.loads((out / "cascade.json").read_text())
    assert {"stages", "inputs", "gt_free", "input_metrics", "best_stage", "mode"} <= set(manifest)
    first, second = manifest["stages"]
    assert [first["variant"], second["variant"]] == ["structured", "probabilistic"]
    assert (first["seed"], second["seed"]) == (0, 1)
    assert second["input"] == "stage1-structured"
    for entry in (first, second):
        assert {"config", "train_seconds", "gt_free_error", "metrics", "outputs"} <= set(entry)
        assert entry["metrics"]["psnr"] > 0 and entry["gt_free_error"] > 0
    # stage 2 was trained on stage 1's output, not on the noisy image
    stage1 = read_image(s1 / "image.tif")
    trained_on = spy_train[1]["images"][0]  # the stages' sample layout: (1, Y, X)
    np.testing.assert_array_equal(trained_on.reshape(stage1.shape), stage1)
    np.testing.assert_allclose(casc.denoise(noisy), read_image(s2 / "image.tif"), atol=1e-5)
    assert len(casc.denoise([noisy, noisy], return_all=True)) == 2


def test_resume_skips_finished_stages_and_continues_checkpoint(files, tmp_path, capsys,
                                                               spy_train) -> None:
    noisy, _ = files
    out = tmp_path / "out"
    args = ["cascade", str(noisy), "-o", str(out), "--stages", "n2v,probabilistic", *TINY]
    assert run_cli(args, capsys)[0] == 0
    model1 = out / "stage1-n2v" / "model" / "model.json"
    stamp = model1.stat().st_mtime_ns
    # simulate an interruption of stage 2 after its last checkpoint
    stage2 = out / "stage2-probabilistic"
    for name in ("model/model.json", "model/weights.pt", "noisy.tif", "noisy_std.tif"):
        (stage2 / name).unlink()
    spy_train.clear()
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--resume" in err  # refuses a used folder without a flag
    assert run_cli([*args, "--resume"], capsys)[0] == 0
    assert [c["resume"] for c in spy_train] == [True]  # only stage 2, from its checkpoint
    assert model1.stat().st_mtime_ns == stamp
    assert (stage2 / "noisy_std.tif").is_file()
    spy_train.clear()
    assert run_cli([*args, "--resume"], capsys)[0] == 0
    assert spy_train == []
    manifest = json.loads((out / "cascade.json").read_text())
    assert [e["trained"] for e in manifest["stages"]] == [False, False]


def test_inference_only_applies_models_in_order(files, tmp_path, noisy_pair, capsys,
                                                monkeypatch) -> None:
    clean, noisy = noisy_pair
    noisy_path, clean_path = files
    m1 = train(noisy, tiny_config(variant="probabilistic"), output_dir=tmp_path / "m1",
               progress=False)
    m2 = train(noisy, tiny_config(variant="structured", seed=3), output_dir=tmp_path / "m2",
               progress=False)
    monkeypatch.setattr(stages_mod, "train", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["cascade", str(noisy_path), "-o", str(out), "--inference-only",
                               "--models", f"{tmp_path / 'm1'},{tmp_path / 'm2'}",
                               "-r", str(clean_path)], capsys)
    assert code == 0 and "GT-free score" in stdout and "manifest: " in stdout  # the summary
    expected = m2.denoise(m1.denoise(noisy, blend="none"), blend="none")  # stages: no blend
    got = read_image(out / "stage2-structured" / "noisy.tif")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (out / "stage1-probabilistic" / "noisy_std.tif").is_file()
    manifest = json.loads((out / "cascade.json").read_text())
    assert manifest["mode"] == "inference-only"
    assert manifest["stages"][0]["model"] == str((tmp_path / "m1").resolve())
    assert manifest["stages"][1]["metrics"]["psnr"] > 0


def test_gt_free_estimate_is_mse_plus_noise_variance() -> None:
    y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 127.0
    clean = (0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)).astype(np.float32)
    clean[40:80, 40:80] += 0.2
    sigma = 0.1
    noisy = clean + np.random.default_rng(1).normal(0, sigma, clean.shape).astype(np.float32)
    denoisers = {"oracle": lambda z: clean, "gauss1": lambda z: ndimage.gaussian_filter(z, 1.0),
                 "gauss3": lambda z: ndimage.gaussian_filter(z, 3.0),
                 "median": lambda z: ndimage.median_filter(z, 5)}
    for name, fn in denoisers.items():
        est = gt_free_errors([noisy], [fn])[0]
        truth = float(np.mean((fn(noisy) - clean) ** 2)) + sigma**2
        assert est == pytest.approx(truth, rel=0.05), name
    # the hidden value is really hidden: the identity "denoiser" cannot score ~0
    assert gt_free_errors([noisy], [lambda z: z])[0] > 1.5 * sigma**2
    # stage k is scored on the chain up to k (here: two smoothing passes)
    g = denoisers["gauss1"]
    one, two = gt_free_errors([noisy], [g, g], GTFreeOptions(n_masks=8))
    truth = float(np.mean((g(g(noisy)) - clean) ** 2)) + sigma**2
    assert two == pytest.approx(truth, rel=0.05) and one != two


def _scripted(monkeypatch, scores: list[float]) -> None:
    real = SelfSupervisedError.evaluate
    it = iter(scores)

    def fake(self, fn, from_noisy=False):
        return next(it), real(self, fn, from_noisy)[1]

    monkeypatch.setattr(SelfSupervisedError, "evaluate", fake)


def test_passes_auto_stops_when_estimate_stops_improving(noisy_pair, monkeypatch) -> None:
    _, noisy = noisy_pair
    _scripted(monkeypatch, [5.0, 3.0, 4.0])
    casc = _tiny_cascade(["probabilistic"], auto=True, max_stages=4).fit(noisy, progress=False)
    m = casc.manifest
    assert [e["gt_free_error"] for e in m["stages"]] == [5.0, 3.0]
    assert [e["stage"] for e in m["rejected"]] == [3]
    assert "stage 3" in m["auto"]["stopped"] and m["best_stage"] == 2
    assert len(casc.models) == 2


def test_stages_auto_picks_the_best_candidate(noisy_pair, monkeypatch, tmp_path) -> None:
    _, noisy = noisy_pair
    # depth 1: structured 5, probabilistic 4; depth 2: 3, 3.5; depth 3: 3.2, 3.1 -> stop
    _scripted(monkeypatch, [5.0, 4.0, 3.0, 3.5, 3.2, 3.1])
    casc = _tiny_cascade(auto=True, max_stages=3)
    casc.fit(noisy, output_dir=tmp_path / "auto", progress=False)
    m = casc.manifest
    assert [e["dir"] for e in m["stages"]] == ["stage1-probabilistic", "stage2-structured"]
    assert len(m["rejected"]) == 4 and m["stages"][1]["input"] == "stage1-probabilistic"


@pytest.mark.parametrize("extra, message", [
    (["--stages", "structured,bogus"], "unknown method 'bogus'"),
    (["--stages", "n2v", "--passes", "2"], "not both"),
    (["--passes", "two"], "--passes"),
    (["--inference-only"], "--models"),
])
def test_cli_option_errors(files, tmp_path, capsys, extra, message) -> None:
    noisy, _ = files
    code, _, err = run_cli(["cascade", str(noisy), "-o", str(tmp_path / "o"), *extra, *TINY],
                           capsys)
    assert code == 2 and message in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_cli_missing_input_and_existing_output(tmp_path, files, capsys) -> None:
    code, _, err = run_cli(["cascade", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o"),
                            *TINY], capsys)
    assert code == 2 and "nope.tif" in err and len(err.strip().splitlines()) == 1
    small = tmp_path / "small.npy"
    np.save(small, np.random.default_rng(0).random((8, 8)))
    code, _, err = run_cli(["cascade", str(small), "-o", str(tmp_path / "o"), *TINY], capsys)
    assert code == 2 and f"{small}: image 8x8 is smaller than the patch size 16" in err
    assert not (tmp_path / "o").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "something.txt").write_text("x")
    code, _, err = run_cli(["cascade", str(files[0]), "-o", str(used), *TINY], capsys)
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert os.listdir(used) == ["something.txt"]


def test_cli_per_stage_yaml_list(files, tmp_path, capsys) -> None:
    noisy, _ = files
    cfg = tmp_path / "stages.yaml"
    cfg.write_text("- {variant: n2v, learning_rate: 0.002}\n"
                   "- {variant: probabilistic, epochs: 2, seed: 7}\n")
    out = tmp_path / "out"
    sizes = ["--epochs", "1", "--patch-size", "16", "--depth", "2", "--width", "8",
             "--steps-per-epoch", "3", "-q"]  # no --retrain-epochs: stage 2 keeps its own
    code, printed, err = run_cli(["cascade", str(noisy), "-o", str(out), "--config", str(cfg),
                                  *sizes], capsys)
    assert code == 0, err
    assert printed == ""  # -q: no summary either
    first, second = json.loads((out / "cascade.json").read_text())["stages"]
    assert first["config"]["learning_rate"] == 0.002 and first["epochs"] == 1
    assert (second["variant"], second["epochs"], second["seed"]) == ("probabilistic", 2, 7)
    assert second["config"]["network"]["width"] == 8  # command-line sizes apply to every stage


def test_plan_of_passes_and_defaults() -> None:
    from n2v_cascade.cli_cascade import _plan

    assert _plan(None, "3", "n2v", "x", None) == (["n2v"] * 3, False)
    assert _plan(None, "auto", "probabilistic", "x", None) == (["probabilistic"], True)
    assert _plan("auto", None, "n2v", "n2v,structured", None) == (["n2v", "structured"], True)
    assert _plan(None, None, "n2v", "x", None) == (["structured", "probabilistic"], False)
    cfgs = [{"width": 4}, {}]
    assert _plan("n2v,blindspot", None, "n2v", "x", cfgs)[0][1] == {"variant": "blindspot"}
    assert stage_config("n2v", 1, {"epochs": 50, "seed": 2}).epochs == 10  # base: stage 1 only
    assert stage_config("n2v", 0, {"epochs": 50, "seed": 2}).seed == 2
    assert stage_config("structured", 1, tiny_config()).mask.pattern == "grid"
    assert stage_config("blindspot", 0).network.blind_radius == "auto"  # chosen when trained
    assert stage_config("blindspot", 1).network.blind_radius == 0  # later: pixel only
    assert stage_config({"variant": "blindspot", "network": {"blind_radius": "auto"}},
                        1).network.blind_radius == "auto"  # asked for explicitly: kept


def test_resume_reuses_a_stage_trained_with_blind_radius_auto(tmp_path, noisy_pair,
                                                             spy_train) -> None:
    _, noisy = noisy_pair
    auto = tiny_config(variant="blindspot", epochs=1, steps_per_epoch=2,
                       network={"depth": 2, "width": 8, "blind_radius": "auto"})
    first = stages_mod.run_stage([noisy], auto, tmp_path / "s", ["image"], progress=False)
    stored = first.model.config.network.blind_radius
    assert isinstance(stored, int) and first.trained
    spy_train.clear()
    again = stages_mod.run_stage([noisy], auto, tmp_path / "s", ["image"], resume=True,
                                 progress=False)
    assert not again.trained and spy_train == []  # "auto" matches the resolved radius
    other = tiny_config(variant="blindspot", epochs=1, steps_per_epoch=2,
                        network={"depth": 2, "width": 8, "blind_radius": stored + 1})
    with pytest.raises(InputError, match="different config"):
        stages_mod.run_stage([noisy], other, tmp_path / "s", ["image"], resume=True,
                             progress=False)


def test_later_stages_keep_the_pixel_only_blind_spot(tmp_path, noisy_pair, spy_train) -> None:
    """A denoised input's leftover noise is correlated by construction; the default
    ``auto`` radius must not widen the blind spot of a retraining stage."""
    _, noisy = noisy_pair
    casc = _tiny_cascade(("n2v", "blindspot")).fit(noisy, output_dir=tmp_path / "o",
                                                    progress=False)
    second = spy_train[1]["config"]
    assert second.network.blind_radius == 0
    assert casc.models[1].network.shift == 1


def test_a_stored_stage_answers_auto_with_what_auto_resolved_to() -> None:
    def config(**mask):
        return tiny_config(dims=2, mask={"fraction": 0.02, **mask})

    # struct auto chose box:5 on the stored stage and widened its grid 4 -> 6
    stored = config(struct="box:5", stride=6)
    assert stages_mod.same_config(stored, config())
    assert stages_mod.same_config(stored, config(stride=6))
    # a stride that box:5 leaves visible is not what auto would have widened to
    assert not stages_mod.same_config(stored, config(stride=8))
    assert stages_mod.same_config(stored, config(struct="box:5", stride=6))  # as given
    assert not stages_mod.same_config(stored, config(struct="box:5", stride=8))
