"""Screenshots of the napari plugin in use, for the README (``make screenshots``).

Runs only with ``N2V_SCREENSHOTS=1`` on a display with OpenGL (the image canvas needs
it; ``make screenshots`` uses Xvfb), so ordinary test runs never modify ``docs/``.
Each screenshot is the whole napari window, taken by napari, after the widget's work
has finished: ``docs/napari-train.png``, ``napari-denoise.png``, ``napari-cascade.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("N2V_SCREENSHOTS") != "1" or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    pytest.skip("screenshots: run `make screenshots` (N2V_SCREENSHOTS=1 on a display with "
                "OpenGL) to refresh docs/napari-*.png", allow_module_level=True)
pytest.importorskip("napari", reason="needs the 'napari' extra")

DOCS = Path(__file__).resolve().parents[1] / "docs"
SMALL = {"batch_size": 8, "steps_per_epoch": 25, "network": {"depth": 2, "width": 8}}
WAIT = 600_000


def test_screenshots(qtbot, tmp_path) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    try:
        viewer.open_sample("n2v-cascade", "noisy_cell")
        data = viewer.layers["noisy cell"].data[150:406, 200:456]  # 256 x 256: a quick run
        viewer.layers.clear()
        viewer.add_image(data, name="noisy cell")

        def shot(dock, name: str) -> None:
            viewer.reset_view()
            for _ in range(20):
                qtbot.wait(50)
            viewer.screenshot(str(DOCS / f"napari-{name}.png"), canvas_only=False)
            viewer.window.remove_dock_widget(dock)

        dock, train = viewer.window.add_plugin_dock_widget("n2v-cascade", "Train (N2V)")
        train.method.setCurrentText("probabilistic-blindspot")
        train.config_overrides = SMALL
        train.epochs.setValue(4)
        train.output.setText(str(tmp_path / "cell-model"))
        train.start()
        qtbot.waitUntil(lambda: train.model is not None and train.train_button.isEnabled(),
                        timeout=WAIT)
        shot(dock, "train")

        dock, denoise = viewer.window.add_plugin_dock_widget("n2v-cascade", "Denoise")
        denoise.posterior.setChecked(True)
        denoise.uncertainty.setChecked(True)
        denoise.start()
        qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=WAIT)
        viewer.layers["noisy cell uncertainty"].visible = True
        viewer.grid.enabled = True
        shot(dock, "denoise")

        for layer in list(viewer.layers)[1:]:
            viewer.layers.remove(layer)
        dock, cascade = viewer.window.add_plugin_dock_widget("n2v-cascade", "Cascade")
        cascade.config_overrides = SMALL
        cascade.epochs.setValue(4)
        cascade.retrain_epochs.setValue(2)
        cascade.start()
        qtbot.waitUntil(lambda: len(viewer.layers) == 3 and cascade.run_button.isEnabled(),
                        timeout=WAIT)
        shot(dock, "cascade")
    finally:
        viewer.close()
