"""The napari plugin's dock widgets, headless (pytest-qt, QT_QPA_PLATFORM=offscreen).

The widgets run against ``napari.components.ViewerModel`` (layers and notifications
without an OpenGL canvas, which the offscreen platform cannot give); one test docks them
in a real ``napari.Viewer`` through npe2. Screenshots: ``test_napari_screenshots.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari", reason="needs the 'napari' extra: pip install "
                    "'n2v-cascade[napari]' (make test installs it)")
pytest.importorskip("pytestqt", reason="needs pytest-qt (the 'napari-test' extra)")

from napari.components import ViewerModel  # noqa: E402
from napari.utils.notifications import notification_manager  # noqa: E402

from n2v_cascade.config import TrainConfig  # noqa: E402
from n2v_cascade.model import Model  # noqa: E402
from n2v_cascade.napari import CascadeWidget, DenoiseWidget, TrainWidget, noisy_cell  # noqa: E402
from n2v_cascade.napari._common import load_model, save_model, session  # noqa: E402
from n2v_cascade.training import train  # noqa: E402

TINY = {"batch_size": 4, "steps_per_epoch": 5, "seed": 0, "mask": {"fraction": 0.02},
        "network": {"depth": 2, "width": 4}}
WAIT = 60_000  # ms; the tiny trainings take about a second


def _noisy(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:64, 0:64] / 63.0
    clean = 100 + 60 * np.sin(5 * x) * np.cos(3 * y)
    return (clean + rng.normal(0, 10, clean.shape)).astype(np.float32)


def _errors(since: int) -> list[str]:
    return [str(r.message) for r in notification_manager.records[since:]]


@pytest.fixture
def viewer():
    v = ViewerModel()
    v.add_image(_noisy(), name="noisy")
    return v


def _trained(w: TrainWidget, qtbot, out, *, patch: int = 16, epochs: int = 2) -> None:
    """Train the tiny recipe from the widget into ``out`` and wait for the end."""
    w.config_overrides = TINY
    w.patch.setValue(patch)
    w.epochs.setValue(epochs)
    w.model = None
    w.output.setText(str(out))
    w.start()
    qtbot.waitUntil(lambda: w.model is not None and w.train_button.isEnabled(), timeout=WAIT)


def test_train_from_a_layer_then_cancel(viewer, qtbot, tmp_path) -> None:
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    assert w.checked_names() == ["noisy"]
    assert w.method.currentText() == TrainConfig().variant  # the API's default method
    _trained(w, qtbot, tmp_path / "m")
    assert (w.bar.value(), w.bar.maximum()) == (10, 10) and len(w._losses) == 10
    assert session().model is w.model and (tmp_path / "m" / "model.json").is_file()

    w.model = None
    w.epochs.setValue(10_000)
    w.output.setText(str(tmp_path / "c"))
    w.start()
    qtbot.waitUntil(lambda: len(w._losses) >= 3, timeout=WAIT)
    w.cancel()
    qtbot.waitUntil(lambda: w.model is not None and w.train_button.isEnabled(), timeout=WAIT)
    assert 3 <= w.bar.value() < w.bar.maximum() and "stopped early" in w.status.text()
    assert (tmp_path / "c" / "checkpoint.pt").is_file()
    np.testing.assert_array_equal(Model.load(tmp_path / "c").denoise(_noisy()),
                                  w.model.denoise(_noisy()))


def test_time_limit_stops_training(viewer, qtbot, tmp_path) -> None:
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    w.time_limit.setValue(0.5)
    _trained(w, qtbot, tmp_path / "t", epochs=10_000)
    assert w.bar.value() < w.bar.maximum() and (tmp_path / "t" / "checkpoint.pt").is_file()


def test_correlated_noise_trains_two_phases_on_one_bar(qtbot, tmp_path) -> None:
    from test_renoise import correlated_pair

    v = ViewerModel()
    v.add_image(correlated_pair(0, 96)[1], name="wide-field")
    w = TrainWidget(v)
    qtbot.addWidget(w)
    assert w.refine.currentText() == "auto"  # the same default as the train command
    _trained(w, qtbot, tmp_path / "m", patch=32, epochs=3)
    assert w.model.config.variant == "renoise"  # 1 epoch of the default, then 2 of renoise
    assert (w.bar.value(), w.bar.maximum()) == (15, 15)
    assert [s for s, _ in w._losses] == list(range(1, 16))  # one curve over both phases
    w.refine.setCurrentText("none")
    _trained(w, qtbot, tmp_path / "n", patch=32, epochs=3)
    assert w.model.config.variant == TrainConfig().variant


def test_denoise_into_new_layers(viewer, qtbot) -> None:
    noisy = viewer.layers["noisy"].data
    model = train(noisy, _config(variant="probabilistic-blindspot",
                                 network={"depth": 2, "width": 4, "blind_radius": 0}),
                  progress=False)
    w = DenoiseWidget(viewer)
    qtbot.addWidget(w)
    session().set(model, "test")
    assert w.posterior.isEnabled()
    w.posterior.setChecked(True)
    w.uncertainty.setChecked(True)
    w.start()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=WAIT)
    assert [layer.name for layer in viewer.layers] == [
        "noisy", "noisy posterior", "noisy uncertainty"]
    mean, std = model.denoise(noisy, posterior=True, return_std=True, tile=512)
    np.testing.assert_array_equal(viewer.layers["noisy posterior"].data, mean)
    np.testing.assert_array_equal(viewer.layers["noisy uncertainty"].data, std)

    session().set(train(noisy, _config(), progress=False), "n2v")
    assert not w.posterior.isEnabled() and not w.posterior.isChecked()


def test_cascade_adds_every_stage_with_its_score(viewer, qtbot) -> None:
    w = CascadeWidget(viewer)
    qtbot.addWidget(w)
    w.config_overrides = TINY
    w.stages.setText("n2v, n2v2")
    w.patch.setValue(16)
    w.epochs.setValue(1)
    w.retrain_epochs.setValue(1)
    w.start()
    qtbot.waitUntil(lambda: len(viewer.layers) == 3 and w.run_button.isEnabled(), timeout=WAIT)
    stages = viewer.layers[1:]
    assert [s.name.split(" (")[0] for s in stages] == ["noisy stage1 n2v", "noisy stage2 n2v2"]
    for layer in stages:
        score = layer.metadata["gt_free_error"]
        assert score > 0 and f"GT-free {score:.4g}" in layer.name
    assert "best (lowest score)" in w.scores.text() and session().model is not None


def test_bad_layers_and_failures_are_notifications(viewer, qtbot) -> None:
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="colour", rgb=True)
    viewer.add_image(np.zeros((2, 2, 16, 16), np.float32), name="4d")
    w = TrainWidget(viewer)
    qtbot.addWidget(w)
    since = len(notification_manager.records)
    for name, expected in (("colour", "RGB images are not supported"),
                           ("4d", "got 4-D (2x2x16x16)")):
        w.set_checked([name])
        w.start()
        assert expected in _errors(since)[-1] and w.worker is None
    w.set_checked(["noisy"])
    w.config_overrides = {**TINY, "mean_loss": "mse"}  # not a loss of n2v: refused at once
    w.start()
    assert "mean_loss" in _errors(since)[-1]
    w.patch.setValue(512)  # larger than the image: refused inside the worker thread
    w.config_overrides = TINY
    w.start()
    qtbot.waitUntil(lambda: w.train_button.isEnabled(), timeout=WAIT)
    assert "smaller than the patch" in _errors(since)[-1]
    assert all("Traceback" not in e and "\n" not in e for e in _errors(since))


def test_models_load_and_save_folders_and_packages(tmp_path) -> None:
    model = train(_noisy(), _config(), progress=False)
    folder = save_model(model, tmp_path / "folder")
    assert load_model(folder) is session().model
    np.testing.assert_array_equal(session().model.denoise(_noisy()), model.denoise(_noisy()))
    pytest.importorskip("bioimageio.core", reason="BMZ packages need the 'bmz' extra")
    package = save_model(model, tmp_path / "m.zip", tile=96)  # a validated export
    np.testing.assert_array_equal(load_model(package).denoise(_noisy()),
                                  model.denoise(_noisy()))


def test_sample_data_and_manifest() -> None:
    from npe2 import PluginManifest

    (data, meta), = noisy_cell()
    assert data.shape == (660, 550) and meta["name"] == "noisy cell"
    manifest = PluginManifest.from_distribution("n2v-cascade")
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Train (N2V)", "Denoise", "Cascade"}
    assert [s.key for s in manifest.contributions.sample_data] == ["noisy_cell"]


def test_napari_docks_the_plugin_widgets(qtbot) -> None:
    import napari

    viewer = napari.Viewer(show=False)  # through npe2, as a user opens them from the menu
    try:
        docked = [viewer.window.add_plugin_dock_widget("n2v-cascade", name)[1]
                  for name in ("Train (N2V)", "Denoise", "Cascade")]
        assert [type(w) for w in docked] == [TrainWidget, DenoiseWidget, CascadeWidget]
    finally:
        viewer.close()


def _config(**values):
    from n2v_cascade.config import make_config

    merged = {"patch_size": 16, "epochs": 1, **TINY, **values}
    return make_config("test", **merged)


def test_a_zyx_layer_trains_a_3d_model_and_is_denoised_as_a_volume(qtbot, tmp_path) -> None:
    rng = np.random.default_rng(0)
    volume = (np.stack([_noisy(s) for s in range(8)]) + rng.normal(0, 1, (8, 64, 64))
              ).astype(np.float32)
    v = ViewerModel()
    v.add_image(volume, name="stack")
    w = TrainWidget(v)
    qtbot.addWidget(w)
    w.config_overrides = {**TINY, "patch_z": 4, "batch_size": 2, "steps_per_epoch": 2}
    w.patch.setValue(16)
    w.epochs.setValue(1)
    w.axes.setCurrentText("ZYX")
    w.output.setText(str(tmp_path / "m3"))
    w.start()
    qtbot.waitUntil(lambda: w.model is not None and w.train_button.isEnabled(), timeout=WAIT)
    assert w.model.config.dims == 3  # auto: a Z axis of 8 slices
    d = DenoiseWidget(v)
    qtbot.addWidget(d)
    d.axes.setCurrentText("ZYX")
    d.start()
    qtbot.waitUntil(lambda: len(v.layers) == 2, timeout=WAIT)
    np.testing.assert_array_equal(v.layers["stack denoised"].data,
                                  w.model.denoise(volume, axes="ZYX", tile=512))
