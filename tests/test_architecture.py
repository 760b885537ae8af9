"""The package's layering, checked on the source: lower layers never import higher ones,
devices and the 2-D/3-D distinction are decided in their one place each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "n2v_cascade"

# Lowest first. A module may import its own layer and any lower one.
LAYERS = [
    {"errors"},
    {"augment", "axes", "runtime", "io", "normalize", "metrics", "correlation", "noise", "progress",
     "kernels", "masking", "figures", "formats", "extras", "imagefile", "imagefile_meta",
     "imagefile_write", "imagefile_bioio", "inputs", "launch", "distributed", "omezarr",
     "safe_write", "schedule"},
    {"models"},
    {"methods"},
    {"config"},
    {"posterior", "blend", "predict", "data", "gtfree"},
    {"model", "bmz", "bmz_load", "bmz_docs"},  # a model folder or its BMZ package
    {"checkpoints", "training", "run_settings", "training_data", "lazy_data", "batch",
     "checkpoint_export", "chunked", "chunked_run"},
    {"stages", "cascade", "cascade_data", "cascade_report", "refine"},
    {"reproduce", "demo"},
    {"cli", "cli_cascade", "cli_finish", "cli_export", "cli_options", "cli_config", "napari",
     "__init__",
     "__main__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _unit(path: Path) -> str:
    """The layering unit of a source file: a top-level module or a subpackage."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    """Package units imported by a file, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", "") == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    here = path.relative_to(PACKAGE).parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                parts = [*base, *(node.module or "").split(".")] if node.module else list(base)
                names = [parts] if node.module else [[*base, a.name] for a in node.names]
            elif (node.module or "").startswith("n2v_cascade"):
                names = [node.module.split(".")[1:] or [a.name for a in node.names][:1]]
            else:
                continue
            found.update(p[0] for p in names if p and p[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("n2v_cascade."))
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert {_unit(p) for p in _sources()} - set(LEVEL) == set()


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_lower_layer_to_a_higher_one(path: Path) -> None:
    unit = _unit(path)
    upward = sorted(u for u in _imports(path) if LEVEL.get(u, -1) > LEVEL[unit])
    assert not upward, f"{unit} (layer {LEVEL[unit]}) imports {upward}"


def _strings(path: Path) -> list[str]:
    return [n.value for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_devices_are_named_only_in_the_device_seam_and_the_cli() -> None:
    naming = {str(p.relative_to(PACKAGE)) for p in _sources() if "cpu" in _strings(p)}
    assert naming <= {"runtime.py", "cli.py", "cli_cascade.py", "cli_options.py"}, naming


def test_the_2d_assumption_lives_in_the_axes_seam() -> None:
    pattern = re.compile(r"ndim\s*==\s*2|as_slices")
    allowed = {"axes.py",  # the seam itself
               "io.py",  # file formats: 2-D images vs stacks on disk
               "imagefile.py",  # reading io.write_image's one-slice stacks back as ZYX
               "metrics.py",  # SSIM of one image vs the mean over a stack
               "models/blocks.py"}  # 2-D vs 3-D convolutions
    found = {str(p.relative_to(PACKAGE)) for p in _sources() if pattern.search(p.read_text())}
    assert found <= allowed, found - allowed
