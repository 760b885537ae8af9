"""BioImage Model Zoo export (validated offline) and import (bit-identical)."""

from __future__ import annotations

import contextlib
import socket
import zipfile

import numpy as np
import pytest
import yaml

pytest.importorskip("bioimageio.core", reason="needs the 'bmz' extra: pip install "
                    "'n2v-cascade[bmz]' (make test installs it)")

from conftest import run_cli, tiny_config  # noqa: E402
from n2v_cascade import bmz  # noqa: E402
from n2v_cascade.errors import InputError, ModelError, OutputExistsError  # noqa: E402
from n2v_cascade.io import read_image, write_image  # noqa: E402
from n2v_cascade.model import Model  # noqa: E402
from n2v_cascade.training import train  # noqa: E402

TILE = 96  # > 2 x the halo (36) of the depth-2 test networks


@contextlib.contextmanager
def no_network():
    """Refuse (and record) every connection and name lookup while active."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or args)
        raise OSError("network access blocked in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda self, *a: refuse(self, *a))
        mp.setattr(socket.socket, "connect_ex", lambda self, *a: refuse(self, *a))
        mp.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a))
        mp.setattr(socket, "getaddrinfo", lambda *a, **k: refuse(None, *a))
        yield attempts


def _noisy(seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.normal(0, 1, (64, 72)).cumsum(0).cumsum(1) / 50).astype(np.float32) * 40 + 100
    return img + rng.normal(0, 8, img.shape).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bmz")
    noisy = _noisy()
    model = train(noisy, tiny_config(epochs=1), output_dir=root / "model", progress=False)
    with no_network() as attempts:
        path = model.export_bioimageio(root / "n2v.zip", test_image=noisy, tile=TILE,
                                       authors=["A. Tester"])
    return model, path, noisy, attempts


def _rdf(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return yaml.safe_load(zf.read("rdf.yaml"))


def test_export_is_validated_offline_and_complete(exported) -> None:
    model, path, _, attempts = exported
    assert attempts == []  # the validator never tried the network
    rdf = _rdf(path)
    assert rdf["format_version"].startswith("0.5.") and rdf["type"] == "model"
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript"}
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == ("n2v_cascade.bmz", "BMZDenoiser")
    assert arch["kwargs"]["config"] == model.config.model_dump(mode="json")
    ax = rdf["outputs"][0]["axes"]
    div = 2 ** model.config.network.depth
    halo = ax[-1]["halo"]
    assert halo % div == 0 and model.receptive_radius() <= halo < TILE / 2
    assert [a["size"] for a in rdf["inputs"][0]["axes"][2:]] == [TILE, TILE]
    assert model.config.variant == "structured"  # N2V, then the method's own paper
    assert [c["doi"] for c in rdf["cite"]] == ["10.1109/CVPR.2019.00223",
                                               "10.1109/ISBI45749.2020.9098336"]
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.md").decode()
        test_in = np.load(zf.open("test_input.npy"))
        test_out = np.load(zf.open("test_output.npy"))
    assert {"config.yaml", "model.json", "cover.png", "weights_torchscript.pt"} <= names
    assert "## Validation" in readme and "posterior" in readme
    assert test_in.shape == test_out.shape == (1, 1, TILE, TILE)
    np.testing.assert_allclose(test_out[0, 0],
                               model.denoise(test_in[0, 0], tile=None, blend="none"),
                               atol=1e-3 * model.normalizer.std)


def test_import_is_bit_identical(exported) -> None:
    model, path, noisy, _ = exported
    loaded = Model.load(path)
    assert loaded.config == model.config and loaded.normalizer == model.normalizer
    assert loaded.noise == model.noise and loaded.history == model.history
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))


def test_cli_denoises_with_a_package(exported, tmp_path, capsys) -> None:
    model, path, noisy, _ = exported
    write_image(tmp_path / "in.tif", noisy)
    code, _, err = run_cli(["denoise", str(tmp_path / "in.tif"), "--model", str(path),
                            "-o", str(tmp_path / "out.tif"), "--quiet"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(read_image(tmp_path / "out.tif"), model.denoise(noisy))


def test_probabilistic_blindspot_exports_the_prior_mean(tmp_path) -> None:
    noisy = _noisy(2)
    cfg = tiny_config(variant="probabilistic", backbone="blindspot", epochs=1,
                      network={"depth": 2, "width": 4, "blind_radius": 1})
    model = train(noisy, cfg, progress=False)
    path = bmz.export_bioimageio(model, tmp_path / "prob.zip", tile=128)  # halo 60
    rdf = _rdf(path)
    assert [c["doi"] for c in rdf["cite"]] == [
        "10.1109/CVPR.2019.00223", "10.48550/arXiv.1901.10980", "10.3389/fcomp.2020.00005"]
    with zipfile.ZipFile(path) as zf:
        test_in, test_out = (np.load(zf.open(n)) for n in ("test_input.npy", "test_output.npy"))
    prior = model.predict(test_in[0, 0], tile=None)["mean"]
    np.testing.assert_allclose(test_out[0, 0], prior, atol=1e-3 * model.normalizer.std)
    loaded = Model.load(path)
    a, sa = loaded.denoise(noisy, posterior=True, return_std=True)
    b, sb = model.denoise(noisy, posterior=True, return_std=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_failed_validation_writes_no_package(exported, tmp_path, monkeypatch, capsys) -> None:
    model, _, _, _ = exported
    original = bmz._write_files

    def wrong_test_output(*args, **kwargs):  # a package whose test output is not reproduced
        files = original(*args, **kwargs)
        out = np.load(files["test_output.npy"])
        np.save(files["test_output.npy"], out + 10 * model.normalizer.std)
        return files

    monkeypatch.setattr(bmz, "_write_files", wrong_test_output)
    target = tmp_path / "bad.zip"
    code, _, err = run_cli(["export", str(model_dir(exported)), "-o", str(target),
                            "--tile", str(TILE)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "failed the BioImage Model Zoo validation" in err and "not written" in err
    report = tmp_path / "bad.zip.validation.md"
    assert str(report) in err and report.is_file()
    assert not target.exists() and not list(tmp_path.glob(".*tmp*"))


def model_dir(exported):
    return exported[1].parent / "model"


def test_export_refuses_bad_targets(exported, tmp_path, capsys) -> None:
    model, path, _, _ = exported
    with pytest.raises(OutputExistsError, match="already exists"):
        model.export_bioimageio(path)
    with pytest.raises(InputError, match="must end in .zip"):
        model.export_bioimageio(tmp_path / "x.tar")
    with pytest.raises(InputError, match="twice the halo"):
        model.export_bioimageio(tmp_path / "x.zip", tile=32)
    code, _, err = run_cli(["export", str(model_dir(exported)), "-o", str(path)], capsys)
    assert code == 2 and "already exists" in err and not (tmp_path / "x.zip").exists()


def test_foreign_and_corrupt_packages_are_refused(exported, tmp_path, capsys) -> None:
    _, path, noisy, _ = exported
    foreign = tmp_path / "foreign.zip"
    rdf = _rdf(path)
    del rdf["config"]["n2v_cascade"]
    rdf["name"] = "someone else's model"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf))
    with pytest.raises(ModelError, match="was not made by n2v-cascade"):
        Model.load(foreign)
    write_image(tmp_path / "in.tif", noisy)
    code, _, err = run_cli(["denoise", str(tmp_path / "in.tif"), "--model", str(foreign), "-o",
                            str(tmp_path / "o.tif")], capsys)
    assert code == 2 and "not made by n2v-cascade" in err and len(err.splitlines()) == 1

    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(corrupt, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:-1] + bytes([data[-1] ^ 1]) if item.filename ==
                         "weights.pt" else data)
    with pytest.raises(ModelError, match="weights.pt inside the package is corrupt"):
        Model.load(corrupt)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable zip file"):
        Model.load(tmp_path / "junk.zip")


@pytest.mark.parametrize("name", ["n2v2", "structured", "blindspot", "probabilistic"])
def test_every_method_exports_validates_and_reloads_identically(name, tmp_path) -> None:
    # n2v and probabilistic-blindspot are covered above; the rest of the built-ins here
    from n2v_cascade.methods import method_class

    noisy = _noisy(3)
    net = {"depth": 2, "width": 4}
    if method_class(name).backbone == "blindspot":
        net["blind_radius"] = 0
    model = train(noisy, tiny_config(variant=name, epochs=1, steps_per_epoch=2, network=net),
                  progress=False)
    with no_network() as attempts:
        path = bmz.export_bioimageio(model, tmp_path / f"{name}.zip", tile=128)
    assert attempts == []
    assert _rdf(path)["name"]
    loaded = Model.load(path)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
