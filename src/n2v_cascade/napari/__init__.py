"""napari plugin: dock widgets to train, denoise and run cascades, and demo sample data.

Needs the optional extra: ``pip install "n2v-cascade[napari]"``. The widgets are thin
shells over the Python API; see ``napari.yaml`` for what the plugin contributes.
"""

from __future__ import annotations

from ..extras import require

require("napari")

from .cascade_widget import CascadeWidget  # noqa: E402
from .denoise_widget import DenoiseWidget  # noqa: E402
from .sample import noisy_cell  # noqa: E402
from .train_widget import TrainWidget  # noqa: E402

__all__ = ["CascadeWidget", "DenoiseWidget", "TrainWidget", "noisy_cell"]
