"""Optional extras: a missing one is a one-line error naming the extra to install."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import run_cli, tiny_config
from n2v_cascade.extras import MissingExtraError, require


@pytest.mark.parametrize(("extra", "module"), [("bmz", "bioimageio.core"),
                                               ("napari", "napari")])
def test_missing_extra_names_it(extra, module, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingExtraError, match=rf'pip install "n2v-cascade\[{extra}\]"'):
        require(extra)


def test_cli_export_without_the_extra(tmp_path, monkeypatch, capsys) -> None:
    from n2v_cascade.training import train

    rng = np.random.default_rng(0)
    train(rng.normal(size=(64, 64)).astype(np.float32), tiny_config(epochs=1),
          output_dir=tmp_path / "m", progress=False)
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    code, _, err = run_cli(["export", str(tmp_path / "m"), "-o", str(tmp_path / "m.zip")],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "optional extra 'bmz'" in err and not (tmp_path / "m.zip").exists()
