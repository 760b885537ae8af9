"""Import of a BioImage Model Zoo package written by :func:`n2v_cascade.bmz.export_bioimageio`.

The package's attached recipe (``config.yaml``, ``model.json``) and its state-dict
weights rebuild the exact :class:`~n2v_cascade.model.Model` it was exported from, so a
model loaded from the ``.zip`` predicts bit-identically to the source folder. Only
plain ``zipfile``/YAML reading is used: importing needs no optional extra. Packages made
by other tools are refused with a one-line message (run those with bioimageio.core).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from .bmz import PACKAGE_FORMAT, PACKAGE_KEY
from .errors import ModelError
from .runtime import load

if TYPE_CHECKING:
    from .model import Model

DESCRIPTION_NAMES = ("rdf.yaml", "bioimageio.yaml")


def load_package(path: str | Path, device: str | torch.device | None = None) -> Model:
    """Rebuild the Model stored in an n2v-cascade BMZ package; one-line errors otherwise."""
    from .model import CONFIG, META, WEIGHTS, Model

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model package not found")
    try:
        with zipfile.ZipFile(path) as zf:
            rdf = _description(zf, path)
            marker = _marker(rdf, path)
            files = _files(rdf)
            contents = {name: _read(zf, name, files.get(name), path)
                        for name in (marker["state_dict"], *marker["attachments"])}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelError(f"{path}: not a readable zip file ({type(exc).__name__})") from None
    try:
        state = load(io.BytesIO(contents[marker["state_dict"]]))
        network = {k.removeprefix("network."): v for k, v in state.items()}
    except Exception as exc:  # noqa: BLE001 - any failure means unusable weights
        raise ModelError(f"{path}: weights cannot be loaded ({type(exc).__name__})") from None
    with tempfile.TemporaryDirectory(prefix="n2v-bmz-load-") as tmp:
        folder = Path(tmp)
        for name in (CONFIG, META):
            if name not in contents:
                raise ModelError(f"{path}: package lacks the attached {name}")
            (folder / name).write_bytes(contents[name])
        torch.save(network, folder / WEIGHTS)
        try:
            return Model.load(folder, device=device)
        except ModelError as exc:
            raise ModelError(str(exc).replace(str(folder), str(path))) from None


def _description(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    names = set(zf.namelist())
    name = next((n for n in DESCRIPTION_NAMES if n in names), None)
    if name is None:
        raise ModelError(f"{path}: not a BioImage Model Zoo package (no rdf.yaml inside)")
    try:
        rdf = yaml.safe_load(zf.read(name))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ModelError(f"{path}: corrupt {name}") from None
    if not isinstance(rdf, dict):
        raise ModelError(f"{path}: corrupt {name} (not a mapping)")
    return rdf


def _marker(rdf: dict[str, Any], path: Path) -> dict[str, Any]:
    """Our section of the package's ``config``; refuses packages made by other tools."""
    config = rdf.get("config")
    marker = config.get(PACKAGE_KEY) if isinstance(config, dict) else None
    if not isinstance(marker, dict):
        what = rdf.get("name", "unnamed")
        raise ModelError(
            f"{path}: BioImage Model Zoo package {what!r} was not made by n2v-cascade; only "
            f"packages exported by `n2v-cascade export` can be loaded (run others with "
            f"bioimageio.core or the tool that made them)")
    if marker.get("format_version") != PACKAGE_FORMAT:
        raise ModelError(f"{path}: n2v-cascade package format {marker.get('format_version')!r}"
                         f" is not supported (expects {PACKAGE_FORMAT})")
    if not isinstance(marker.get("state_dict"), str) or not isinstance(
            marker.get("attachments"), list):
        raise ModelError(f"{path}: corrupt n2v-cascade section in the package description")
    return marker


def _files(rdf: dict[str, Any]) -> dict[str, str | None]:
    """File name -> SHA-256 for the weights and attachments the description lists."""
    out: dict[str, str | None] = {}
    entries = list(rdf.get("attachments") or [])
    weights = rdf.get("weights")
    if isinstance(weights, dict) and isinstance(weights.get("pytorch_state_dict"), dict):
        entries.append(weights["pytorch_state_dict"])
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("source"), str):
            out[entry["source"]] = entry.get("sha256")
    return out


def _read(zf: zipfile.ZipFile, name: str, sha256: str | None, path: Path) -> bytes:
    """A member's bytes, checked against the SHA-256 the description gives for it."""
    try:
        data = zf.read(name)
    except KeyError:
        raise ModelError(f"{path}: package lacks {name}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"{path}: {name} inside the package is corrupt (checksum mismatch)")
    return data
