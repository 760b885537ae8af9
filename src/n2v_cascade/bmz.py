"""BioImage Model Zoo export: a validated model package (spec 0.5) of a trained Model.

The package holds two weight formats of one network, :class:`BMZDenoiser`: the PyTorch
state dict with its architecture (importable from this package, rebuilt from its
kwargs) and TorchScript (what deepImageJ runs). The exported network takes the image in
its own intensity units and returns the denoised image (for probabilistic models: the
prior mean) in the same units: the normalisation is built into the network rather than
declared as pre/post-processing, so every consumer, whatever processing steps it
implements, computes the same numbers. The recipe (``config.yaml``, ``model.json``) is
attached, so that :func:`n2v_cascade.bmz_load.load_package` rebuilds the exact Model.

Before anything is written the package is tested in-process with ``bioimageio.core``
(no network access); a package that fails is not written.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile
import torch
from torch import nn

from . import __version__
from .config import make_config
from .errors import InputError, N2VError, OutputExistsError
from .methods import get_method
from .models.blocks import fused_causal
from .runtime import HOST, fast_layout, host_state

if TYPE_CHECKING:
    from .model import Model

PACKAGE_KEY = "n2v_cascade"  # config section that marks a package as ours
PACKAGE_FORMAT = 1
STATE_DICT, TORCHSCRIPT = "weights.pt", "weights_torchscript.pt"
ATTACHMENTS = ("config.yaml", "model.json")
INPUT_ID, OUTPUT_ID = "raw", "denoised"
SPATIAL_AXES = ("y", "x")  # 2-D now; a 3-D model adds "z" in front
DEFAULT_TILE = 256


class BMZExportError(N2VError):
    """The package did not pass the BioImage Model Zoo validation (nothing was written)."""


class BMZDenoiser(nn.Module):
    """The exported network: an image in its intensity units in, the denoised image out.

    ``config`` is a TrainConfig as a plain mapping and ``mean``/``std`` the normalisation
    of the training data; the weights live in ``network``. Output channel: the method's
    ``mean`` estimate (the prior mean of probabilistic models).
    """

    def __init__(self, config: dict[str, Any], mean: float, std: float) -> None:
        super().__init__()
        cfg = make_config("bioimageio architecture kwargs", **config)
        self.method = get_method(cfg)
        self.network = self.method.build_network()
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *spatial)`` image units -> ``(B, 1, *spatial)`` denoised image units."""
        z = (x.float() - self.mean) / self.std
        out = self.method.estimate(self.network(fast_layout(z)))["mean"]
        return out * self.std + self.mean


def export_bioimageio(
    model: Model, path: str | Path, *, test_image: object = None, name: str | None = None,
    authors: Sequence[str] = (), license: str = "CC-BY-4.0", tile: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a validated BioImage Model Zoo package (``.zip``).

    Parameters
    ----------
    test_image
        A noisy image (array or path) whose centre crop becomes the test input and the
        cover; default: the bundled cell image scaled to the training data's statistics,
        with noise.
    name, authors, license
        Package metadata (defaults: a name from the method, "n2v-cascade user",
        CC-BY-4.0; the licence must be an SPDX identifier).
    tile
        Input tile side (a multiple of ``2**depth``, more than twice the halo); default
        256 or four halos, whichever is larger.

    Raises
    ------
    BMZExportError
        The package does not pass ``bioimageio.core``'s model test; the message names
        the first problem and the file holding the full report. Nothing is written then.
    """
    from .extras import require
    from .safe_write import atomic_path

    require("bmz")
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise InputError(f"{path}: a BioImage Model Zoo package must end in .zip")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
    if model.config.network.blind_radius == "auto":
        raise InputError("the model's blind radius is unresolved ('auto'); train it first")
    if model.config.dims != 2 or model.config.n_channels != 1:
        raise InputError(f"BioImage Model Zoo export covers 2-D one-channel models; this one "
                         f"is {model.config.dims}-D with {model.config.n_channels} channel(s) "
                         f"(use the model folder itself)")
    div = 2 ** model.config.network.depth
    halo = -(-model.receptive_radius() // div) * div
    tile = _tile(tile, halo, div)
    name = name or f"n2v-cascade {model.config.variant} denoiser"
    with tempfile.TemporaryDirectory(prefix="n2v-bmz-") as tmp:
        work = Path(tmp)
        files = _write_files(model, work, test_image, tile, halo, name, license)
        descr = _describe(model, work, files, name, authors, license, tile, halo)
        package = work / "package.zip"
        _save_package(descr, package)
        _validate(package, path)
        with atomic_path(path, overwrite=overwrite) as out:
            out.write_bytes(package.read_bytes())
    return path


def _tile(tile: int | None, halo: int, div: int) -> int:
    if tile is None:
        return max(DEFAULT_TILE, 4 * halo)
    if tile % div or tile <= 2 * halo:
        raise InputError(f"tile {tile} must be a multiple of {div} (2**depth) and more "
                         f"than twice the halo {halo}, e.g. {max(4 * halo, div)}")
    return tile


def _test_input(model: Model, image: object, tile: int) -> np.ndarray:
    """A ``tile x tile`` float32 test input in the model's intensity units."""
    from .inputs import load_inputs

    if image is None:
        from skimage import data

        cell = data.cell().astype(np.float32)  # the demo's image, shipped offline
        scaled = (cell - cell.mean()) / cell.std()
        noise = (model.noise or {}).get("sigma") or 0.25 * model.normalizer.std
        rng = np.random.default_rng(0)
        arr = (scaled * model.normalizer.std + model.normalizer.mean
               + rng.normal(0, noise, cell.shape)).astype(np.float32)
    else:
        arr = load_inputs(image)[0].data
        arr = arr.reshape(-1, *arr.shape[-2:])[0]  # a stack: its first image
    pads = [(max(0, tile - s) // 2, max(0, tile - s) - max(0, tile - s) // 2) for s in arr.shape]
    if any(p for pair in pads for p in pair):  # smaller than a tile: mirror it out
        arr = np.pad(arr, pads, mode="symmetric")
    y0, x0 = ((s - tile) // 2 for s in arr.shape)
    return np.ascontiguousarray(arr[y0: y0 + tile, x0: x0 + tile], np.float32)


def _write_files(model: Model, work: Path, test_image: object, tile: int, halo: int,
                 name: str, license: str) -> dict[str, Path]:
    """Weights, test tensors, cover, README, environment and recipe files in ``work``."""
    import bioimageio.core
    import bioimageio.spec

    from .bmz_docs import cover, readme

    saved = model.save(work / "model")
    net = BMZDenoiser(model.config.model_dump(mode="json"), model.normalizer.mean,
                      model.normalizer.std)
    net.network.load_state_dict(host_state(model.network))
    net.eval()
    x = _test_input(model, test_image, tile)
    batch = torch.from_numpy(x)[None, None]
    with torch.no_grad():
        y = net(batch).numpy()
        with fused_causal(False), warnings.catch_warnings():
            # tracing: the traced graph is fixed to the tile size, which the axes declare
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, batch, check_trace=False)
        y_traced = traced(batch).numpy()
    reference = model.predict(x, tile=None)["mean"]
    tol = 1e-4 * model.normalizer.std + 1e-5 * float(np.abs(reference).max())
    for what, out in (("state dict", y), ("TorchScript", y_traced)):
        if not np.allclose(out[0, 0], reference, rtol=0, atol=tol):
            raise BMZExportError(f"the exported network ({what}) does not reproduce the "
                                 f"model (max difference {np.abs(out[0, 0] - reference).max()})")
    files = {k: work / k for k in (STATE_DICT, TORCHSCRIPT, "test_input.npy",
                                   "test_output.npy", "sample_input.tif",
                                   "sample_output.tif", "cover.png", "README.md",
                                   "environment.yaml", *ATTACHMENTS)}
    torch.save(net.state_dict(), files[STATE_DICT])
    traced.save(str(files[TORCHSCRIPT]))
    np.save(files["test_input.npy"], batch.numpy())
    np.save(files["test_output.npy"], y.astype(np.float32))
    for key, arr in (("sample_input.tif", x), ("sample_output.tif", y[0, 0])):
        tifffile.imwrite(files[key], arr[None, None].astype(np.float32))
    cover(x, y[0, 0], files["cover.png"])
    versions = (f"bioimageio.core {bioimageio.core.__version__}, bioimageio.spec "
                f"{bioimageio.spec.__version__}")
    files["README.md"].write_text(readme(model, name=name, tile=tile, halo=halo,
                                         license=license, bmz_versions=versions))
    files["environment.yaml"].write_text(
        "name: n2v-cascade\nchannels: [conda-forge]\ndependencies:\n  - python>=3.11\n"
        f"  - pip\n  - pip:\n    - torch=={torch.__version__.split('+')[0]}\n"
        f"    - n2v-cascade=={__version__}\n")
    for attachment in ATTACHMENTS:
        files[attachment].write_bytes((saved / attachment).read_bytes())
    return files


def _describe(model: Model, work: Path, files: dict[str, Path], name: str,
              authors: Sequence[str], license: str, tile: int, halo: int) -> Any:
    """The ``ModelDescr`` (spec 0.5) of the files in ``work``; one-line error if invalid."""
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5 as spec
    from pydantic import ValidationError

    from .bmz_docs import citations

    torch_version = spec.Version(torch.__version__.split("+")[0])
    ref = {"tensor_id": spec.TensorId(INPUT_ID)}
    in_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("intensity")])]
    in_axes += [spec.SpaceInputAxis(id=spec.AxisId(a), size=tile) for a in SPATIAL_AXES]
    out_axes = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("mean")])]
    out_axes += [spec.SpaceOutputAxisWithHalo(
        id=spec.AxisId(a), halo=halo, size=spec.SizeReference(axis_id=spec.AxisId(a), **ref))
        for a in SPATIAL_AXES]
    float_data = spec.IntervalOrRatioDataDescr(type="float32")
    arch = spec.ArchitectureFromLibraryDescr(
        callable=spec.Identifier(BMZDenoiser.__name__), import_from=__name__,
        kwargs={"config": model.config.model_dump(mode="json"),
                "mean": model.normalizer.mean, "std": model.normalizer.std})
    marker = {"format_version": PACKAGE_FORMAT, "package_version": __version__,
              "variant": model.config.variant, "state_dict": STATE_DICT,
              "attachments": list(ATTACHMENTS), "halo": halo, "tile": tile}
    try:
        with ValidationContext(root=work, perform_io_checks=True, log_warnings=False):
            return spec.ModelDescr(
                name=name,
                description=(f"Self-supervised {model.config.variant} denoiser for 2-D "
                             f"microscopy images (n2v-cascade {__version__})."),
                authors=[spec.Author(name=a) for a in authors or ["n2v-cascade user"]],
                cite=[spec.CiteEntry(text=c["text"], doi=spec.Doi(c["doi"]))
                      for c in citations(model)],
                license=spec.LicenseId(license),
                documentation=spec.FileDescr(source=files["README.md"]),
                covers=[spec.FileDescr(source=files["cover.png"])],
                tags=["denoising", "noise2void", "self-supervised", "2d", "pytorch",
                      "n2v-cascade", model.config.variant],
                attachments=[spec.FileDescr(source=files[a]) for a in ATTACHMENTS],
                inputs=[spec.InputTensorDescr(
                    id=spec.TensorId(INPUT_ID), axes=in_axes, data=float_data,
                    description="noisy image in its own intensity units",
                    test_tensor=spec.FileDescr(source=files["test_input.npy"]),
                    sample_tensor=spec.FileDescr(source=files["sample_input.tif"]),
                    preprocessing=[spec.EnsureDtypeDescr(
                        kwargs=spec.EnsureDtypeKwargs(dtype="float32"))])],
                outputs=[spec.OutputTensorDescr(
                    id=spec.TensorId(OUTPUT_ID), axes=out_axes, data=float_data,
                    description="denoised image (prior mean) in the input's units",
                    test_tensor=spec.FileDescr(source=files["test_output.npy"]),
                    sample_tensor=spec.FileDescr(source=files["sample_output.tif"]))],
                weights=spec.WeightsDescr(
                    pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                        source=files[STATE_DICT], architecture=arch,
                        pytorch_version=torch_version,
                        dependencies=spec.FileDescr(
                            source=files["environment.yaml"])),
                    torchscript=spec.TorchscriptWeightsDescr(
                        source=files[TORCHSCRIPT], pytorch_version=torch_version,
                        parent="pytorch_state_dict")),
                config=spec.Config.model_validate({PACKAGE_KEY: marker}),
            )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "description"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"BioImage Model Zoo description: {loc}: {first['msg']}{more}"
                         ) from None


def _save_package(descr: Any, package: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    with warnings.catch_warnings(), contextlib.redirect_stdout(None):
        warnings.simplefilter("ignore")
        save_bioimageio_package(descr, output_path=package)


def _validate(package: Path, target: Path) -> None:
    """Run bioimageio.core's model test on ``package``; raise with one line if it fails."""
    from bioimageio.core import test_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = test_model(package, devices=[str(HOST)])  # where the test output was made
    if summary.status == "passed":
        return
    report = target.with_name(target.name + ".validation.md")
    summary.save_markdown(report)
    errors = summary.errors
    first = (f"{'.'.join(str(p) for p in errors[0].loc) or 'model'}: {errors[0].msg}"
             if errors else f"status {summary.status}")
    first = " ".join(first.split())[:300]
    raise BMZExportError(f"{target}: the package failed the BioImage Model Zoo validation "
                         f"({first}); not written; full report in {report}")
