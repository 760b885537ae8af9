"""Every third-party module that src/ imports comes from a core dependency, not an extra.

A plain ``pip install n2v-cascade`` must run every method; ``make plain-check`` proves it
in a venv without extras, this test catches a missing declaration in seconds.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "n2v_cascade"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[ ;<>=!~\[]", requirement, maxsplit=1)[0]).lower()


def _imports(tree: ast.AST) -> set[str]:
    """Top-level modules imported, except inside ``try: ... except ImportError``."""
    optional = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try)
                and any(isinstance(h.type, ast.Name) and h.type.id in (
                    "ImportError", "ModuleNotFoundError") for h in t.handlers)
                for n in ast.walk(ast.Module(body=t.body, type_ignores=[]))}
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


# Code that only runs with its optional extra, which it names when missing
# (n2v_cascade.extras.require): it may import that extra's packages.
GATED = {"bmz": ["bmz.py"], "napari": ["napari/"], "formats": ["imagefile_bioio.py"],
         "distributed": ["omezarr.py", "chunked.py", "chunked_run.py"]}


def _gated(path: Path) -> str | None:
    rel = path.relative_to(SRC).as_posix()
    return next((extra for extra, parts in GATED.items()
                 if any(rel == p or rel.startswith(p) for p in parts)), None)


def test_src_imports_only_core_dependencies() -> None:
    core = {_name(r) for r in PROJECT["dependencies"]}
    providers = metadata.packages_distributions()
    modules = set().union(*(_imports(ast.parse(p.read_text())) for p in SRC.rglob("*.py")
                            if _gated(p) is None))
    third_party = sorted(m for m in modules if m not in sys.stdlib_module_names
                         and m != "n2v_cascade")
    assert "torch" in third_party and "pywt" in third_party  # the scan sees real imports
    undeclared = {m: providers.get(m) for m in third_party
                  if not {_name(d) for d in providers.get(m, [])} & core}
    assert not undeclared, f"imported by src/ but not a core dependency: {undeclared}"


def test_gated_code_imports_only_core_and_its_extra() -> None:
    extras = PROJECT["optional-dependencies"]
    allowed = {_name(r) for r in PROJECT["dependencies"]}
    providers = metadata.packages_distributions()
    for path in SRC.rglob("*.py"):
        extra = _gated(path)
        if extra is None:
            continue
        mine = allowed | {_name(r) for r in extras[extra]}
        for module in _imports(ast.parse(path.read_text())):
            if module in sys.stdlib_module_names or module == "n2v_cascade":
                continue
            dists = {_name(d) for d in providers.get(module, [module])}
            assert dists & mine, f"{path.name} imports {module} from neither the core nor [{extra}]"


# An extra may narrow a core dependency's version range for its own packages.
CONSTRAINTS = {"bmz": {"pydantic"}}  # bioimageio.spec 0.5.12 fails under pydantic 2.14


def test_extras_hold_only_what_the_core_does_not_import() -> None:
    extras = PROJECT["optional-dependencies"]
    assert {"test", "bench", "formats", "bmz", "napari", "distributed"} <= set(extras)
    assert "bioio" in {_name(r) for r in extras["formats"]}
    core = {_name(r) for r in PROJECT["dependencies"]}
    for name, group in extras.items():
        assert not core & {_name(r) for r in group} - CONSTRAINTS.get(name, set()), name


def _dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` would run for fresh venvs under ``tmp_path``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(["make", "-n", target, f"VENV={tmp_path}/v", f"PLAIN={tmp_path}/p"],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout.splitlines()


def test_make_demo_installs_no_extras_and_make_test_runs_the_plain_check(tmp_path) -> None:
    demo = _dry_run("demo", tmp_path)
    installs = [line for line in demo if " pip install " in line]
    assert installs[-2:] == [f"{tmp_path}/v/bin/python -m pip install -q torch==2.13.0",
                             f"{tmp_path}/v/bin/python -m pip install -q -e ."]
    test = _dry_run("test", tmp_path)
    assert (f"{tmp_path}/v/bin/python -m pip install -q -e "
            f"'.[test,bench,bmz,napari,napari-test,distributed]'") in test
    plain = [line for line in test if line.startswith(f"{tmp_path}/p/bin/python")]
    assert plain[-3:] == [f"{tmp_path}/p/bin/python -m pip install -q .",
                          f"{tmp_path}/p/bin/python -m pip install -q --no-deps "
                          f"--force-reinstall .",
                          f"{tmp_path}/p/bin/python tests/plain_install.py"]
    torch_first = [line for line in plain if "pip install" in line][1]
    assert torch_first.endswith("torch==2.13.0")
