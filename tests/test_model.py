"""The saved-model folder and prediction through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from conftest import tiny_config
from n2v_cascade.errors import ModelError, OutputExistsError
from n2v_cascade.model import Model
from n2v_cascade.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(1)
    img = (rng.normal(0, 1, (48, 56)).cumsum(0).cumsum(1) / 50).astype(np.float32)
    noisy = img + rng.normal(0, 0.2, img.shape).astype(np.float32)
    path = tmp_path_factory.mktemp("m") / "model"
    model = train(noisy, tiny_config(epochs=1), output_dir=path, progress=False)
    return model, path, noisy


def test_reload_predicts_bit_identically(trained) -> None:
    model, path, noisy = trained
    loaded = Model.load(path)
    assert loaded.config == model.config and loaded.normalizer == model.normalizer
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))


def test_denoise_and_predict_accept_an_image_file(trained, tmp_path) -> None:
    from n2v_cascade.errors import InputError
    from n2v_cascade.io import write_image

    model, _, noisy = trained
    path = write_image(tmp_path / "noisy.tif", noisy)
    expected = model.denoise(noisy)
    np.testing.assert_array_equal(model.denoise(path), expected)
    np.testing.assert_array_equal(model.denoise(str(path)), expected)
    np.testing.assert_array_equal(model.predict(str(path))["mean"],
                                  model.denoise(noisy, blend="none"))  # the network alone
    with pytest.raises(InputError, match="missing.tif: file not found"):
        model.denoise(tmp_path / "missing.tif")
    with pytest.raises(InputError, match="expected a numpy array or an image path, got list"):
        model.denoise([[1.0, 2.0]])


def test_tiled_equals_whole_image(trained) -> None:
    model, _, noisy = trained
    big = np.tile(noisy, (3, 3))
    whole = model.denoise(big, tile=None)
    tiled = model.denoise(big, tile=64, batch_size=3)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    assert model.receptive_radius() > 4


def test_output_is_in_input_scale_and_stacks_work(trained) -> None:
    model, _, noisy = trained
    out = model.denoise(np.stack([noisy, noisy]))
    assert out.shape == (2, *noisy.shape) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], model.denoise(noisy))
    scaled = noisy * 1000 + 5000  # e.g. uint16 camera counts
    big = train(scaled, tiny_config(epochs=1), progress=False)
    den = big.denoise(scaled)
    assert big.normalizer.mean == pytest.approx(float(scaled.mean()), rel=1e-4)
    assert abs(float(den.mean()) - float(scaled.mean())) < 0.5 * float(scaled.std())


def test_save_refuses_existing_model(trained, tmp_path) -> None:
    model, _, _ = trained
    model.save(tmp_path / "x")
    with pytest.raises(OutputExistsError, match="already holds a model") as info:
        model.save(tmp_path / "x")
    # the Python API names the keyword argument, the CLI the flag
    assert str(info.value).endswith("use overwrite=True to replace")
    assert info.value.cli_message().endswith("use --overwrite to replace")
    model.save(tmp_path / "x", overwrite=True)


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "weights.pt").unlink(), "weights.pt is missing"),
    (lambda p: (p / "weights.pt").write_bytes(b"garbage"), "weights cannot be loaded"),
    (lambda p: (p / "config.yaml").write_text("epochs: [1,\n"), "corrupt model metadata"),
    (lambda p: (p / "config.yaml").write_text("epochs: -3\n"), "corrupt model config"),
    (lambda p: (p / "model.json").write_text("{"), "corrupt model metadata"),
    (lambda p: (p / "model.json").write_text(json.dumps({"format_version": 99})),
     "format version 99 is not supported"),
])
def test_broken_model_folders_give_one_line_errors(trained, tmp_path, damage, message) -> None:
    model, _, _ = trained
    path = model.save(tmp_path / "broken")
    damage(path)
    with pytest.raises(ModelError, match=message) as info:
        Model.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        Model.load(tmp_path / "nope")


def test_config_in_folder_is_the_full_recipe(trained) -> None:
    model, path, _ = trained
    saved = yaml.safe_load((path / "config.yaml").read_text())
    assert saved == model.config.model_dump(mode="json")
    meta = json.loads((path / "model.json").read_text())
    assert meta["package_version"] and meta["normalizer"]["std"] > 0


def test_blindspot_model_saved_before_the_network_options_loads_unchanged(trained,
                                                                         tmp_path) -> None:
    """Folders written before ring_residual / blind_radius existed lack both keys; they
    meant no ring and the pixel-only blind spot, not today's defaults."""
    _, _, noisy = trained
    cfg = tiny_config(variant="blindspot", epochs=1, steps_per_epoch=2,
                      network={"depth": 2, "width": 8, "blind_radius": 0,
                               "ring_residual": False})
    path = tmp_path / "old"
    model = train(noisy, cfg, output_dir=path, progress=False)
    raw = yaml.safe_load((path / "config.yaml").read_text())
    del raw["network"]["blind_radius"], raw["network"]["ring_residual"]
    (path / "config.yaml").write_text(yaml.safe_dump(raw))
    loaded = Model.load(path)
    assert loaded.config.network.blind_radius == 0 and loaded.network.shift == 1
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
