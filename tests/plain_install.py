"""Run every method the README shows in a venv that has the package without extras.

``make plain-check`` (and ``make test``) run this with ``.venv-plain/bin/python``: a venv
holding torch and ``pip install .`` only. It refuses to run where the test or bench
extras are installed, or where the package is not the installed copy, since it would
then prove nothing. Tiny image, tiny network, one
epoch of a few steps: it checks that everything imports and runs, not the quality.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import pkgutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

EXTRAS = ("pytest", "hypothesis", "ruff", "bm3d")  # the test and bench extras
TINY = ["--patch-size", "16", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2",
        "--depth", "2", "--width", "4", "-q"]
README = Path(__file__).resolve().parent.parent / "README.md"


def cli(*args: str) -> None:
    """Run the CLI in this process (one torch import for all checks); fail on a non-zero exit."""
    from n2v_cascade.cli import main

    sys.argv = ["n2v-cascade", *args]
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"n2v-cascade {' '.join(args)}: exit code {exc.code}") from None


def checks(work: Path) -> dict[str, object]:
    import numpy as np

    from n2v_cascade.demo import demo_image, run_demo
    from n2v_cascade.io import write_image

    write_image(work / "clean.tif", demo_image()[200:264, 200:264])
    noisy, out = str(work / "noisy.tif"), str(work)

    def train(name: str, *extra: str):
        return lambda: cli("train", noisy, "-o", f"{out}/{name}", *extra, *TINY)

    def denoise(name: str, *extra: str):
        return lambda: cli("denoise", noisy, "-m", f"{out}/{name}", "-o",
                           f"{out}/{name}.tif", "-q", *extra)

    def python_api() -> None:  # the README's Python API section, as written
        from test_readme import python_blocks

        (work / "readme").mkdir()
        os.chdir(work / "readme")
        for block in python_blocks(README.read_text()):
            exec(compile(block, str(README), "exec"), {})  # noqa: S102

    def finish() -> None:  # a folder as Ctrl-C leaves it: checkpoint.pt, no model.json
        import shutil

        shutil.copytree(work / "prob", work / "cut")
        (work / "cut" / "model.json").unlink()
        cli("finish", f"{out}/cut", noisy, "-q")
        cli("denoise", noisy, "-m", f"{out}/cut", "-o", f"{out}/cut.tif", "-q")

    def finite_outputs() -> None:
        import tifffile

        bad = [p for p in work.rglob("*.tif") if not np.isfinite(tifffile.imread(p)).all()]
        assert not bad, f"non-finite pixels in {bad}"

    def every_module_imports() -> None:  # optional extras' modules name their extra
        from n2v_cascade.extras import MissingExtraError

        for m in pkgutil.walk_packages(importlib.import_module("n2v_cascade").__path__,
                                       "n2v_cascade."):
            try:
                importlib.import_module(m.name)
            except MissingExtraError as exc:
                assert "pip install \"n2v-cascade[" in str(exc), exc

    return {
        "every module imports": every_module_imports,
        "console script --help": lambda: subprocess.run(
            [str(Path(sys.executable).with_name("n2v-cascade")), "--help"], check=True,
            capture_output=True),
        "add-noise": lambda: cli("add-noise", f"{out}/clean.tif", "-o", noisy),
        **{f"train --variant {v}": train(v, "--variant", v)
           for v in ("n2v", "n2v2", "structured", "blindspot", "neighbor2neighbor",
                     "recorrupted")},
        "train --mask horizontal:3": train("struct", "--variant", "structured", "--mask",
                                           "horizontal:3"),
        "train --variant probabilistic": train("prob", "--variant", "probabilistic"),
        "train --lazy (a plain TIFF, memory-mapped: no zarr needed)": train("lazy", "--lazy"),
        "train --variant probabilistic --backbone blindspot": train(
            "probbs", "--variant", "probabilistic", "--backbone", "blindspot"),
        "denoise (n2v)": denoise("n2v"),
        "denoise --posterior --uncertainty": denoise("prob", "--posterior", "--uncertainty"),
        "denoise --posterior --noise-from bootstrap --uncertainty (blind-spot)": denoise(
            "probbs", "--posterior", "--noise-from", "bootstrap", "--uncertainty"),
        "denoise (blind-spot: prior or posterior chosen per image)": denoise(
            "probbs", "--uncertainty", "--overwrite"),
        "denoise --noise-from image": denoise("probbs", "--posterior", "--noise-from",
                                              "image", "--overwrite"),
        "finish (an interrupted folder)": finish,
        "evaluate": lambda: cli("evaluate", f"{out}/n2v.tif", noisy, "-r", f"{out}/clean.tif",
                                "--json", f"{out}/scores.json"),
        "cascade --stages structured,probabilistic": lambda: cli(
            "cascade", noisy, "-o", f"{out}/run1", "--stages", "structured,probabilistic",
            "--retrain-epochs", "1", "-r", f"{out}/clean.tif", *TINY),
        "cascade --stages auto": lambda: cli(
            "cascade", noisy, "-o", f"{out}/run3", "--stages", "auto", "--max-stages", "1",
            *TINY),
        "demo (tiny)": lambda: run_demo(
            work / "demo", epochs=1, retrain_epochs=1, crop=48, progress=False,
            base={"patch_size": 16, "batch_size": 4, "steps_per_epoch": 2,
                  "network": {"depth": 2, "width": 4}}),
        "Python API (README)": python_api,
        "outputs are finite": finite_outputs,
    }


def main() -> int:
    present = [m for m in EXTRAS if importlib.util.find_spec(m) is not None]
    if present:
        print(f"plain install check: {', '.join(present)} installed; run it in a venv "
              f"without the extras (make plain-check)", file=sys.stderr)
        return 2
    package = Path(importlib.util.find_spec("n2v_cascade").origin).parent
    if "site-packages" not in package.parts:
        print(f"plain install check: n2v_cascade comes from {package}, not from an "
              f"installed copy", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")  # tiny runs warn about validation strips etc.
    passed, failed, t0 = 0, 0, time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for name, run in checks(work).items():
            log, start = io.StringIO(), time.perf_counter()
            try:
                with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                    run()
                passed += 1
                print(f"ok      {name} ({time.perf_counter() - start:.1f} s)")
            except Exception as exc:  # noqa: BLE001 - report every failing method
                failed += 1
                print(f"{log.getvalue()}FAILED  {name}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
    print(f"plain install ({time.perf_counter() - t0:.0f} s): {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
