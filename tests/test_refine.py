"""Two-phase `train` runs: when they happen, what they leave, resume, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from n2v_cascade import train_refined
from n2v_cascade.config import make_config
from n2v_cascade.errors import InputError, OutputExistsError
from n2v_cascade.io import write_image
from n2v_cascade.model import Model
from n2v_cascade.refine import FIRST, PLAN
from test_renoise import correlated_pair

RECIPE = {"patch_size": 32, "batch_size": 4, "steps_per_epoch": 6, "epochs": 3, "seed": 0,
          "network": {"depth": 2, "width": 8}, "precision": "float32"}


def recipe(**overrides):
    return make_config("test", **{**RECIPE, **overrides})


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    return correlated_pair(0, 96)


@pytest.fixture(scope="module")
def refined(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("refined") / "m"
    model = train_refined(pair[1], recipe(), output_dir=out, progress=False)
    return out, model


def _weights(path) -> list[torch.Tensor]:
    return list(torch.load(path / "weights.pt", weights_only=True).values())


def test_correlated_noise_trains_the_default_then_renoise(refined, pair) -> None:
    out, model = refined
    assert model.config.variant == "renoise" and model.config.epochs == 2
    first = Model.load(out / FIRST)
    assert first.config.variant == "structured" and first.config.epochs == 1
    assert first.config.mask.struct.startswith("box:")  # what made the run two-phase
    plan = json.loads((out / PLAN).read_text())
    assert plan["first"]["epochs"] == 3 and plan["second"]["variant"] == "renoise"
    # the folder is one model that denoises the noisy image, as returned
    np.testing.assert_array_equal(Model.load(out).denoise(pair[1]), model.denoise(pair[1]))
    assert model.train_seconds > Model.load(out).train_seconds  # both phases counted


def test_white_noise_or_another_method_trains_one_model(pair, tmp_path) -> None:
    rng = np.random.default_rng(0)
    white = (pair[0] + rng.normal(size=pair[0].shape) * 8).astype(np.float32)
    seen: list[tuple[int, int, int, int]] = []
    one = train_refined(white, recipe(), output_dir=tmp_path / "w", progress=False,
                        callbacks=[lambda i: seen.append((i.phases, i.step, i.run_step,
                                                          i.run_total_steps))])
    assert one.config.variant == "structured" and one.config.epochs == 3
    assert seen == [(1, k, k, 18) for k in range(1, 19)]  # a lone training is its own run
    assert not (tmp_path / "w" / FIRST).exists() and not (tmp_path / "w" / PLAN).exists()
    for config, refine in ((recipe(variant="n2v"), "auto"), (recipe(), "none"),
                           (recipe(epochs=1), "auto")):
        assert train_refined(pair[1], config, refine=refine,
                             progress=False).config.variant == config.variant
    stack = np.stack([correlated_pair(s, 64)[1] for s in range(8)])  # a 3-D network: one
    three = train_refined(stack, recipe(dims=3, patch_z=8, steps_per_epoch=2), axes="ZYX",
                          progress=False)
    assert three.config.variant == "structured" and three.config.mask.struct != "none"
    forced = train_refined(pair[1], recipe(variant="n2v"), refine="renoise", progress=False)
    assert forced.config.variant == "renoise"
    # a callback that stops the first phase (napari's Cancel, a budget) ends the run there
    steps: list[int] = []
    stopped = train_refined(pair[1], recipe(), progress=False,
                            callbacks=[lambda info: steps.append(info.step) or info.step == 2])
    assert stopped.config.variant == "structured" and steps == [1, 2]


def test_both_phases_count_on_one_run_of_steps(pair) -> None:
    seen: list[tuple[int, int, int, int]] = []
    train_refined(pair[1], recipe(), progress=False, callbacks=[
        lambda i: seen.append((i.phase, i.phases, i.run_step, i.run_total_steps))])
    # 6 steps of the first phase, then 12 of renoise: one count, one total from the start
    assert [s[:2] for s in seen] == [(1, 2)] * 6 + [(2, 2)] * 12
    assert [s[2] for s in seen] == list(range(1, 19))
    assert {s[3] for s in seen} == {18}


def test_resume_reuses_the_finished_first_phase(refined, pair, tmp_path) -> None:
    out, _ = refined
    copy = tmp_path / "m"
    import shutil

    shutil.copytree(out, copy)
    for name in ("model.json", "weights.pt", "checkpoint.pt"):  # stopped between phases
        (copy / name).unlink()
    first = (copy / FIRST / "weights.pt").stat().st_mtime_ns
    model = train_refined(pair[1], None, output_dir=copy, resume=True, progress=False)
    assert (copy / FIRST / "weights.pt").stat().st_mtime_ns == first  # not trained again
    assert model.config.variant == "renoise"
    for a, b in zip(_weights(copy), _weights(out), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # as the run that never stopped


def test_refusals_are_one_line_and_leave_the_folder_alone(pair, tmp_path) -> None:
    with pytest.raises(InputError, match="refine must be one of auto, renoise, none"):
        train_refined(pair[1], recipe(), refine="twice")
    with pytest.raises(InputError, match="learns from an earlier stage's output"):
        train_refined(pair[1], recipe(variant="renoise"))
    path = tmp_path / "noisy.tif"
    write_image(path, pair[1])
    with pytest.raises(InputError, match="needs the images in memory"):
        train_refined(str(path), recipe(), refine="renoise", lazy=True)
    small = tmp_path / "small"  # refused by the first phase: nothing is written
    with pytest.raises(InputError, match="smaller than the patch size"):
        train_refined(pair[1], recipe(patch_size=128), output_dir=small, progress=False)
    assert not small.exists()
    busy = tmp_path / "busy"
    train_refined(pair[1], recipe(), refine="none", output_dir=busy, progress=False)
    with pytest.raises(OutputExistsError, match="already holds"):
        train_refined(pair[1], recipe(), output_dir=busy, progress=False)
    assert not (busy / FIRST).exists() and not (busy / PLAN).exists()
    (busy / PLAN).write_text("{not json")
    with pytest.raises(InputError, match="not a readable two-phase plan"):
        train_refined(pair[1], None, output_dir=busy, resume=True, progress=False)


def test_cli_train_says_it_runs_two_phases_and_resumes(pair, tmp_path, capsys) -> None:
    path = tmp_path / "noisy.tif"
    write_image(path, pair[1])
    args = ["train", str(path), "-o", str(tmp_path / "m"), "--patch-size", "32",
            "--batch-size", "4", "--steps-per-epoch", "6", "--epochs", "3", "--depth", "2",
            "--width", "8", "--precision", "float32"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    lines = err.splitlines()
    # the whole recipe in the first line, both phases on one count of steps (18 = 6 + 12)
    start = next(x for x in lines if "training structured:" in x)
    assert "; then renoise for 2 epoch(s) on its output (two phases: the noise is " \
           "spatially correlated (box:" in start, start
    assert any(x.startswith("phase 2/2: training renoise:") for x in lines), err
    counts = [x for x in lines if x.startswith("train ")]
    assert len(counts) == 1 and counts[0].startswith("train 2/2: 18/18 steps (100%)"), err
    assert "model saved to" in out
    assert Model.load(tmp_path / "m").config.variant == "renoise"
    (tmp_path / "m" / "model.json").unlink()
    code, out, err = run_cli(["train", str(path), "-o", str(tmp_path / "m"), "--resume"],
                             capsys)
    assert code == 0, err
    assert "continuing the two-phase run" in err
    assert Model.load(tmp_path / "m").config.variant == "renoise"
    code, _, err = run_cli(["train", str(path), "-o", str(tmp_path / "m"), "--resume",
                            "--epochs", "6"], capsys)  # the plan, not new options
    assert code == 2 and "resumes with the recipe in its refine.json" in err
    code, _, err = run_cli([*args[:3], str(tmp_path / "n"), *args[4:], "--refine", "none"],
                           capsys)
    assert code == 0 and Model.load(tmp_path / "n").config.variant == "structured"
