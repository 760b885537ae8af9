"""A method added in one file outside the package trains, saves, reloads and denoises
through the Python API and the CLI: nothing else needs to change."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from conftest import run_cli, tiny_config
from n2v_cascade.methods import REGISTRY, methods, register
from n2v_cascade.model import Model
from n2v_cascade.training import train


@pytest.fixture
def toy_method():
    from toy_method import ToyPairs

    register(ToyPairs)
    yield ToyPairs
    REGISTRY.pop(ToyPairs.name)


def test_toy_method_through_the_api(toy_method, noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    assert "toy-pairs" in methods()
    cfg = tiny_config(variant="toy-pairs", epochs=3, steps_per_epoch=6)
    assert cfg.learning_rate == 2e-3  # the method's own default
    model = train(noisy, cfg, output_dir=tmp_path / "m", progress=False)
    assert isinstance(model.method, toy_method)
    losses = [h["train_loss"] for h in model.history]
    assert losses[-1] < losses[0], losses
    loaded = Model.load(tmp_path / "m")
    assert loaded.config == model.config
    out = loaded.denoise(noisy)
    np.testing.assert_array_equal(out, model.denoise(noisy))
    assert out.shape == noisy.shape and np.isfinite(out).all()


def test_toy_method_through_the_cli(toy_method, noisy_pair, tmp_path, capsys) -> None:
    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    code, _, err = run_cli(["train", str(tmp_path / "noisy.tif"), "-o", str(tmp_path / "m"),
                            "--variant", "toy-pairs", "--epochs", "2", "--steps-per-epoch",
                            "3", "--patch-size", "16", "--depth", "2", "--width", "8", "-q"],
                           capsys)
    assert code == 0, err
    code, _, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "--model",
                            str(tmp_path / "m"), "-o", str(tmp_path / "out.tif"), "-q"], capsys)
    assert code == 0, err
    expected = Model.load(tmp_path / "m").denoise(noisy)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), expected)


def test_a_taken_name_is_refused(toy_method) -> None:
    clash = type("Clash", (toy_method,), {"name": "n2v"})
    with pytest.raises(ValueError, match="taken"):
        register(clash)
