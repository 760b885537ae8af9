"""Dock widget: train a denoiser on image layers, with progress, a live loss plot, Cancel."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..config import DEFAULT_VARIANT, make_config
from ..errors import InputError
from ..methods import methods
from ..model import Model
from ..refine import REFINES, train_refined
from ..training import StepInfo
from ._common import (
    AXES,
    ModelRow,
    image_layers,
    layer_axes,
    layer_image,
    report,
    run_in_worker,
    session,
)


class _Progress(QObject):
    """Carries step reports from the training thread to the GUI thread (queued signal)."""

    step = Signal(object)


class TrainWidget(QWidget):
    """Train a model on the checked image layers; the result becomes the session's model.

    ``config_overrides`` (not shown) adds config values to the recipe, e.g. a small
    network for a quick try.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.config_overrides: dict[str, Any] = {}
        self.worker = None
        self.model: Model | None = None
        self._cancel = threading.Event()
        self._losses: list[tuple[int, float]] = []
        self._drawn = 0.0
        self._progress = _Progress()
        self._progress.step.connect(self._on_step)

        self.layers = QListWidget()
        self.method = QComboBox()
        self.method.addItems(list(methods()))
        self.method.setCurrentText(DEFAULT_VARIANT)  # the same default as train()
        self.method.setToolTip("probabilistic-blindspot: the exact posterior mean")
        self.axes = QComboBox()
        self.axes.addItems(AXES)
        self.refine = QComboBox()
        self.refine.addItems(list(REFINES))  # auto first: the same default as train
        self.refine.setToolTip("auto: a second phase (renoise) when the noise is spatially "
                               "correlated; none: one model")
        self.epochs = QSpinBox(minimum=1, maximum=100000, value=30)
        self.patch = QSpinBox(minimum=8, maximum=4096, value=64, singleStep=8)
        self.time_limit = QDoubleSpinBox(minimum=0, maximum=1e7, value=0, suffix=" s")
        self.time_limit.setSpecialValueText("none")
        self.output = QLineEdit()
        self.output.setPlaceholderText("model folder (default: a new temporary folder)")
        self.overwrite = QCheckBox("replace a model already there")
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # a fixed layout and one line whose data is replaced: a redraw costs milliseconds
        self.figure = Figure(figsize=(3, 2))
        self.figure.subplots_adjust(left=0.2, bottom=0.24, right=0.96, top=0.95)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.axis = self.figure.add_subplot()
        (self.line,) = self.axis.plot([], [], lw=0.8)
        self.axis.set_xlabel("step", fontsize=8)
        self.axis.set_ylabel("training loss", fontsize=8)
        self.axis.tick_params(labelsize=7)

        form = QFormLayout()
        for label, widget in (("images", self.layers), ("method", self.method),
                              ("axes", self.axes), ("refine", self.refine),
                              ("epochs", self.epochs), ("patch size", self.patch),
                              ("time limit", self.time_limit),
                              ("output", self.output), ("", self.overwrite)):
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.canvas)
        layout.addWidget(self.status)
        layout.addWidget(ModelRow())
        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda *_: self.refresh_layers())
        self.refresh_layers()
        self._plot()

    # -- inputs ------------------------------------------------------------------
    def refresh_layers(self) -> None:
        checked = set(self.checked_names())
        self.layers.clear()
        for layer in image_layers(self.viewer):
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = layer.name in checked or (not checked and self.layers.count() == 0)
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.layers.addItem(item)

    def checked_names(self) -> list[str]:
        items = (self.layers.item(i) for i in range(self.layers.count()))
        return [i.text() for i in items if i.checkState() == Qt.CheckState.Checked]

    def set_checked(self, names: list[str]) -> None:
        for i in range(self.layers.count()):
            item = self.layers.item(i)
            on = item.text() in names
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def recipe(self):
        values = {"variant": self.method.currentText(), "epochs": self.epochs.value(),
                  "patch_size": self.patch.value(),
                  "dims": "auto" if "Z" in self.axes.currentText() else 2,
                  **self.config_overrides}
        return make_config("training widget", **values)

    # -- running -----------------------------------------------------------------
    def start(self) -> None:
        """Check the inputs, then train in a worker thread."""
        try:
            names = self.checked_names()
            if not names:
                raise InputError("no image layer checked: tick the images to train on")
            images = [layer_image(self.viewer.layers[n], self.axes.currentText())
                      for n in names]
            config = self.recipe()
        except InputError as exc:
            report(exc)
            return
        out = self.output.text().strip() or tempfile.mkdtemp(prefix="n2v-napari-")
        self.output.setText(out)
        limit = self.time_limit.value() or None
        self._cancel.clear()
        self._losses.clear()
        self.bar.setValue(0)
        self.status.setText(f"training {config.variant} on {', '.join(names)}…")
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.worker = run_in_worker(
            train_refined, images, config, refine=self.refine.currentText(),
            axes=layer_axes(self.axes.currentText()),
            output_dir=Path(out), overwrite=self.overwrite.isChecked(),
            progress=False, time_limit=limit, callbacks=[self._callback],
            done=self._done, finished=self._finished)

    def cancel(self) -> None:
        """Stop after the current step; the checkpoint and the model so far are written."""
        self._cancel.set()
        self.status.setText("stopping after this step…")

    def _callback(self, info: StepInfo) -> bool:  # runs in the training thread
        self._progress.step.emit(info)
        return self._cancel.is_set()

    def _on_step(self, info: StepInfo) -> None:
        step, total = info.run_step, info.run_total_steps  # both phases of a two-phase run
        self.bar.setMaximum(total)
        self.bar.setValue(step)
        self._losses.append((step, info.loss))
        now = time.perf_counter()
        if now - self._drawn > 0.5 or step == total:
            self._drawn = now
            self._plot()
            phase = f"phase {info.phase}/{info.phases}, " if info.phases > 1 else ""
            self.status.setText(f"{phase}epoch {info.epoch}, step {step}/{total}, "
                                f"loss {info.loss:.4g}, {info.seconds:.0f} s")

    def _plot(self) -> None:
        steps, losses = zip(*self._losses, strict=True) if self._losses else ((), ())
        self.line.set_data(steps, losses)
        self.axis.relim()
        self.axis.autoscale_view()
        self.canvas.draw_idle()

    def _done(self, model: Model) -> None:
        self.model = model
        out = self.output.text()
        session().set(model, out)
        stopped = " (stopped early; checkpoint kept)" if self._cancel.is_set() else ""
        self.status.setText(f"model saved to {out}{stopped}")
        self._plot()
        show_info(f"n2v-cascade: model saved to {out}{stopped}")

    def _finished(self) -> None:
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
