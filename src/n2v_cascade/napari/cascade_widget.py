"""Dock widget: a progressive-retraining cascade, every stage a layer with its GT-free score."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..cascade import Cascade
from ..errors import InputError
from ._common import AXES, LayerChoice, ModelRow, layer_image, report, run_in_worker, session


def run_cascade(image: np.ndarray, stages: list[str], base: dict[str, Any], epochs: int,
                retrain_epochs: int) -> Cascade:
    """Train the cascade on ``image`` (no files written) and return it."""
    cascade = Cascade(stages, base=base, epochs=epochs, retrain_epochs=retrain_epochs)
    return cascade.fit(image, progress=False)


class CascadeWidget(QWidget):
    """Train stage after stage on the previous output; add each stage's output as a layer.

    The layer name and ``metadata["gt_free_error"]`` carry the ground-truth-free score
    (lower is better); the best stage's model becomes the session's model.
    ``config_overrides`` (not shown) adds config values shared by every stage.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.config_overrides: dict[str, Any] = {}
        self.layer = LayerChoice(napari_viewer)
        self.axes = QComboBox()
        self.axes.addItems(AXES)
        self.stages = QLineEdit("structured,probabilistic")
        self.epochs = QSpinBox(minimum=1, maximum=100000, value=30)
        self.retrain_epochs = QSpinBox(minimum=1, maximum=100000, value=10)
        self.patch = QSpinBox(minimum=8, maximum=4096, value=64, singleStep=8)
        self.run_button = QPushButton("Run cascade")
        self.scores = QLabel("")
        self.scores.setWordWrap(True)
        form = QFormLayout()
        for label, widget in (("image", self.layer), ("axes", self.axes),
                              ("stages", self.stages), ("first epochs", self.epochs),
                              ("retrain epochs", self.retrain_epochs),
                              ("patch size", self.patch)):
            form.addRow(label, widget)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.scores)
        layout.addWidget(ModelRow())
        self.run_button.clicked.connect(self.start)

    def start(self) -> None:
        try:
            layer = self.layer.layer()
            image = layer_image(layer, self.axes.currentText())
            stages = [s.strip() for s in self.stages.text().split(",") if s.strip()]
            if not stages:
                raise InputError("stages: give variants separated by commas, e.g. "
                                 "structured,probabilistic")
            base = {"patch_size": self.patch.value(), **self.config_overrides}
            Cascade(stages, base=base)  # refuses unknown variants before any work
        except InputError as exc:
            report(exc)
            return
        self.run_button.setEnabled(False)
        self.scores.setText(f"training {len(stages)} stage(s)…")
        self.worker = run_in_worker(
            run_cascade, image, stages, base, self.epochs.value(), self.retrain_epochs.value(),
            done=lambda cascade: self._add(layer, cascade),
            finished=lambda: self.run_button.setEnabled(True))

    def _add(self, source: Any, cascade: Cascade) -> None:
        keep = {"scale": source.scale, "translate": source.translate}
        lines = []
        for entry, outputs in zip(cascade.manifest["stages"], cascade.outputs, strict=True):
            score = float(entry["gt_free_error"])
            name = f"{source.name} stage{entry['stage']} {entry['variant']} (GT-free {score:.4g})"
            self.viewer.add_image(outputs[0], name=name, metadata={"gt_free_error": score},
                                  **keep)
            lines.append(f"stage {entry['stage']} {entry['variant']}: GT-free {score:.4g}")
        best = cascade.manifest["best_stage"]
        session().set(cascade.models[best - 1], f"cascade stage {best}")
        self.scores.setText("\n".join(lines) + f"\nbest (lowest score): stage {best}")
