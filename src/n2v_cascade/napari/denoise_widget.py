"""Dock widget: denoise an image layer with the session's model into new layers."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..model import Model
from ._common import (
    AXES,
    LayerChoice,
    ModelRow,
    layer_axes,
    layer_image,
    report,
    run_in_worker,
    session,
)


def denoise_layer(model: Model, image: np.ndarray, *, posterior: bool, uncertainty: bool,
                  tile: int | None, axes: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The denoised image and (``uncertainty``) its per-pixel standard deviation."""
    if uncertainty or posterior:
        if not model.method.predicts_variance:
            raise InputError(f"the {model.config.variant} model predicts no variance; "
                             f"posterior and uncertainty need a probabilistic model")
    if uncertainty:
        mean, std = model.denoise(image, axes=axes, posterior=posterior, return_std=True,
                                  tile=tile)
        return mean, std
    return model.denoise(image, axes=axes, posterior=posterior, tile=tile), None


class DenoiseWidget(QWidget):
    """Denoise the chosen layer; adds ``<name> denoised`` (and ``<name> uncertainty``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.layer = LayerChoice(napari_viewer)
        self.axes = QComboBox()
        self.axes.addItems(AXES)
        self.posterior = QCheckBox("posterior mean (probabilistic models)")
        self.uncertainty = QCheckBox("uncertainty layer (probabilistic models)")
        self.tile = QSpinBox(minimum=0, maximum=8192, value=512, singleStep=64)
        self.tile.setSpecialValueText("whole image")
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.run_button = QPushButton("Denoise")
        form = QFormLayout()
        for label, widget in (("image", self.layer), ("axes", self.axes), ("", self.posterior),
                              ("", self.uncertainty), ("tile", self.tile),
                              ("model", self.model_label)):
            form.addRow(label, widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(ModelRow())
        self.run_button.clicked.connect(self.start)
        session().changed.connect(self.show_model)
        self.show_model()

    def show_model(self) -> None:
        """Describe the session's model; offer the posterior only where it exists."""
        model = session().model
        probabilistic = model is not None and model.method.predicts_variance
        for box in (self.posterior, self.uncertainty):
            box.setEnabled(probabilistic)
            if not probabilistic:
                box.setChecked(False)
        self.model_label.setText("none: train or load one" if model is None else
                                 f"{model.config.variant} ({session().source})")

    def start(self) -> None:
        try:
            model = session().require()
            layer = self.layer.layer()
            image = layer_image(layer, self.axes.currentText())
        except InputError as exc:
            report(exc)
            return
        self.run_button.setEnabled(False)
        name = layer.name
        self.worker = run_in_worker(
            denoise_layer, model, image, posterior=self.posterior.isChecked(),
            uncertainty=self.uncertainty.isChecked(), tile=self.tile.value() or None,
            axes=layer_axes(self.axes.currentText()),
            done=lambda result: self._add(name, layer, result),
            finished=lambda: self.run_button.setEnabled(True))

    def _add(self, name: str, source: Any, result: tuple[np.ndarray, np.ndarray | None]) -> None:
        mean, std = result
        kind = "posterior" if self.posterior.isChecked() else "denoised"
        keep = {"scale": source.scale, "translate": source.translate}
        self.viewer.add_image(mean, name=f"{name} {kind}", **keep)
        if std is not None:
            self.viewer.add_image(std, name=f"{name} uncertainty", colormap="magma",
                                  visible=False, **keep)
