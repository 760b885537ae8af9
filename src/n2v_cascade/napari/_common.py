"""Shared pieces of the dock widgets: layer checks, the session's model, background work.

Every widget is a thin shell: it reads its inputs, runs one call of the Python API in a
worker thread (``napari.qt.threading.create_worker``) so the viewer never freezes, and
turns errors into one-line napari notifications instead of tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QPushButton, QWidget

from ..errors import InputError, N2VError
from ..model import Model

# auto: YX, or SYX (a stack of 2-D images); ZYX and the others name the layer's axes (a
# Z axis trains a 3-D model when it has enough slices: TrainConfig dims auto)
AXES = ("auto", "YX", "SYX", "ZYX", "TYX", "CYX", "TZYX", "ZCYX", "TCZYX")


def layer_axes(axes: str) -> str | None:
    """The axes to pass to the API for a widget's choice (None: the defaults)."""
    return None if axes == "auto" else axes


def layer_image(layer: Any, axes: str = "auto") -> np.ndarray:
    """An image layer's data as float32 with the chosen axes (auto: YX or SYX); one-line
    error otherwise."""
    if not isinstance(layer, Image):
        raise InputError(f"layer {getattr(layer, 'name', layer)!r}: not an image layer")
    if layer.rgb:
        raise InputError(f"layer {layer.name!r}: RGB images are not supported; split the "
                         f"channels (one grey-scale layer each)")
    data = np.asarray(layer.data, dtype=np.float32)
    want = (2, 3) if axes == "auto" else (len(axes),)
    if data.ndim not in want:
        shape = "x".join(str(s) for s in data.shape)
        expected = ("a 2-D image (YX) or a stack of 2-D images (SYX)" if axes == "auto"
                    else f"{len(axes)} axes")
        raise InputError(f"layer {layer.name!r}: expected {expected} for axes {axes}, got "
                         f"{data.ndim}-D ({shape})")
    if not np.isfinite(data).all():
        raise InputError(f"layer {layer.name!r}: contains NaN or infinite values")
    return data


def image_layers(viewer: Any) -> list[Image]:
    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def report(exc: BaseException) -> None:
    """Show an error as one notification line (user errors as is, others with their type)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    show_error(text if isinstance(exc, N2VError) else f"{type(exc).__name__}: {text}")


def run_in_worker(fn: Callable[..., Any], *args: Any, done: Callable[[Any], None],
                  finished: Callable[[], None] | None = None, **kwargs: Any) -> Any:
    """Start ``fn(*args, **kwargs)`` in a worker thread; ``done(result)`` runs in the GUI thread."""
    connect: dict[str, Callable] = {"returned": done, "errored": report}
    if finished is not None:
        connect["finished"] = finished
    # an "errored" connection also stops the worker from re-raising in the GUI thread
    return create_worker(fn, *args, _connect=connect, **kwargs)


class LayerChoice(QComboBox):
    """A combo box of the viewer's image layers, kept up to date as layers come and go."""

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        current = self.currentText()
        self.clear()
        self.addItems([layer.name for layer in image_layers(self.viewer)])
        if current:
            self.setCurrentText(current)

    def layer(self) -> Image:
        name = self.currentText()
        if not name or name not in self.viewer.layers:
            raise InputError("no image layer chosen (open or add an image first)")
        return self.viewer.layers[name]


class _Session(QObject):
    """The model the widgets share: trained in one, used by the others."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.model: Model | None = None
        self.source = ""

    def require(self) -> Model:
        if self.model is None:
            raise InputError("no model yet: train one or load a model folder / .zip")
        return self.model

    def set(self, model: Model, source: str) -> None:
        self.model, self.source = model, source
        self.changed.emit()


_SESSION: list[_Session] = []


def session() -> _Session:
    """The process's one session (created on first use, when a QApplication exists)."""
    if not _SESSION:
        _SESSION.append(_Session())
    return _SESSION[0]


def load_model(path: str | Path) -> Model:
    """Load a model folder or an exported ``.zip`` and make it the session's model."""
    model = Model.load(path)
    session().set(model, str(path))
    return model


def save_model(model: Model, path: str | Path, overwrite: bool = False, **export: Any) -> Path:
    """Save ``model``: a ``.zip`` is a validated BMZ package (``export`` options), else a folder."""
    if str(path).lower().endswith(".zip"):
        return model.export_bioimageio(path, overwrite=overwrite, **export)
    return model.save(path, overwrite=overwrite)


class ModelRow(QWidget):
    """Load / save / export buttons for the session's model (folders and BMZ ``.zip``)."""

    def __init__(self) -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for text, slot in (("Load folder…", self._load_folder), ("Load .zip…", self._load_zip),
                           ("Save folder…", self._save), ("Export BMZ…", self._export)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)

    def _load(self, path: str) -> None:
        def done(model: Model) -> None:
            session().set(model, path)
            show_info(f"loaded {path}")

        run_in_worker(Model.load, path, done=done)

    def _load_folder(self) -> None:
        if path := QFileDialog.getExistingDirectory(self, "Model folder"):
            self._load(path)

    def _load_zip(self) -> None:
        if path := QFileDialog.getOpenFileName(self, "BMZ package", filter="*.zip")[0]:
            self._load(path)

    def _save(self) -> None:
        if path := QFileDialog.getSaveFileName(self, "Model folder to write")[0]:
            self._write(path)

    def _export(self) -> None:
        if path := QFileDialog.getSaveFileName(self, "BMZ package", filter="*.zip")[0]:
            self._write(path if path.lower().endswith(".zip") else path + ".zip")

    def _write(self, path: str) -> None:
        try:
            model = session().require()
        except InputError as exc:
            report(exc)
            return
        run_in_worker(save_model, model, path, done=lambda p: show_info(f"wrote {p}"))
