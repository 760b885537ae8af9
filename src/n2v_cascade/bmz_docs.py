"""Texts and pictures of a BioImage Model Zoo package: citations, README, cover image.

Kept apart from :mod:`.bmz` so that the description-building code stays short. Nothing
here imports ``bioimageio``: the citations are plain mappings turned into ``CiteEntry``
objects by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

if TYPE_CHECKING:
    from .model import Model

# Every entry has a DOI (never a URL: the validator would try to reach a URL over the
# network, and the export is validated offline).
CITATIONS: dict[str, dict[str, str]] = {
    "n2v": {"text": "Krull A., Buchholz T.-O., Jug F. Noise2Void - learning denoising from "
                    "single noisy images. CVPR 2019.",
            "doi": "10.1109/CVPR.2019.00223"},
    "n2v2": {"text": "Hoeck E., Buchholz T.-O., Brachmann A., Jug F., Freytag A. N2V2 - fixing "
                     "Noise2Void checkerboard artifacts with modified sampling strategies and "
                     "a tweaked network architecture. ECCV 2022 workshops.",
             "doi": "10.1007/978-3-031-25069-9_33"},
    "structn2v": {"text": "Broaddus C., Krull A., Weigert M., Schmidt U., Myers G. Removing "
                          "structured noise with self-supervised blind-spot networks. "
                          "ISBI 2020.",
                  "doi": "10.1109/ISBI45749.2020.9098336"},
    "laine": {"text": "Laine S., Karras T., Lehtinen J., Aila T. High-quality self-supervised "
                      "deep image denoising. NeurIPS 2019 (arXiv:1901.10980).",
              "doi": "10.48550/arXiv.1901.10980"},
    "pn2v": {"text": "Krull A., Vicar T., Prakash M., Lalit M., Jug F. Probabilistic "
                     "Noise2Void: unsupervised content-aware denoising. Frontiers in "
                     "Computer Science 2, 2020.",
             "doi": "10.3389/fcomp.2020.00005"},
}

def citations(model: Model) -> list[dict[str, str]]:
    """The papers behind ``model``'s method (Noise2Void always first)."""
    cfg, method = model.config, model.method
    keys = ["n2v"]
    if method.name == "n2v2":
        keys.append("n2v2")
    if method.name == "structured" or cfg.mask.struct or cfg.mask.struct_kernel:
        keys.append("structn2v")
    if method.blind:
        keys.append("laine")
    if method.predicts_variance:
        keys.append("pn2v")
    own = [{"text": method.citation, "doi": method.doi}] if method.doi else []
    return [CITATIONS[k] for k in keys] + own


def readme(model: Model, *, name: str, tile: int, halo: int, license: str,
           bmz_versions: str) -> str:
    """The package's documentation (Markdown): method, training summary, recipe, limits."""
    cfg, norm = model.config, model.normalizer
    last = model.history[-1] if model.history else {}
    val = last.get("val_loss")
    noise = model.noise or {}
    noise_txt = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in noise.items()) or "not estimated (not needed)"
    m = model.method
    method = f"{m.label or m.name} (`{m.name}`): {m.summary}"
    method += (" Backbone: the blind-spot network (Laine et al.), which never sees the "
               "pixel it predicts." if m.blind else
               f" Backbone: the U-Net, {m.training_text}.")
    radius = cfg.network.blind_radius
    if m.blind and isinstance(radius, int) and radius:
        method += f" Blind spot: the {2 * radius + 1}x{2 * radius + 1} square around each pixel."
    recipe = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip()
    refs = "\n".join(f"- {c['text']} doi:{c['doi']}" for c in citations(model))
    div = 2 ** cfg.network.depth
    return f"""# {name}

Self-supervised denoiser for 2-D microscopy images, trained with n2v-cascade on the
noisy images alone (no clean targets).

## Method

{method}

U-Net depth {cfg.network.depth}, width {cfg.network.width}, growth {cfg.network.growth:g}.

## Training data

- intensity statistics of the training images: mean {norm.mean:.6g}, std {norm.std:.6g}
- noise model estimated on them: {noise_txt}
- training: {len(model.history)} epoch(s), {model.train_seconds:.1f} s; last training loss
  {last.get('train_loss', float('nan')):.4g}{f', validation loss {val:.4g}' if val else ''}

The images themselves are not part of this package.

## Recipe

The full training configuration (also attached as `config.yaml`; `model.json` holds
the normalisation and noise model):

```yaml
{recipe}
```

## Inputs and outputs

- input `raw`: one 2-D image (axes batch, channel, y, x), float32, in the image's own
  intensity units; tiles of {tile}x{tile} pixels.
- output `denoised`: the denoised image in the same units. Crop a halo of {halo} pixels
  (the receptive-field radius rounded up to a multiple of {div}) from each tile side;
  overlapping tiles then give the same result as one pass over the whole image.
- The normalisation (subtract {norm.mean:.6g}, divide by {norm.std:.6g}, and back) is
  part of both exported networks, so no pre- or post-processing needs to be applied by
  the consumer and every consumer gets the same numbers.

Not exported: for probabilistic models only the prior mean (the prediction from each
pixel's surroundings) is the output; the posterior mean, which combines it with the noise
model and the observed pixel, and the per-pixel uncertainty need n2v-cascade
(`n2v-cascade denoise --model this.zip --posterior --uncertainty`). Test-time
augmentation is not part of the exported network either.

## Validation

This package was checked before it was written with bioimageio.core's model test
({bmz_versions}), offline: both weight formats (PyTorch state dict and TorchScript)
reproduce the attached test output from the test input. To validate the denoiser on
your own data without clean images, compare the ground-truth-free scores of
`n2v-cascade cascade`; with a clean reference, use `n2v-cascade evaluate`.

## Citations

{refs}

## Licence

The weights are released under {license}.
"""


def cover(test_input: np.ndarray, test_output: np.ndarray, path: Path) -> Path:
    """A 2:1 PNG: the test input (left) next to its denoised output (right), same scale."""
    import imageio.v3 as iio

    lo, hi = np.percentile(test_input, (0.5, 99.5))
    scale = 255.0 / max(float(hi - lo), 1e-12)
    panels = [np.clip((a - lo) * scale, 0, 255).astype(np.uint8)
              for a in (test_input, test_output)]
    image = np.concatenate(panels, axis=1)
    factor = max(1, -(-256 // image.shape[0]))  # small tiles are enlarged to >= 256 rows
    image = np.kron(image, np.ones((factor, factor), np.uint8))
    iio.imwrite(path, image)
    return path
