"""Reproducing the paper: the prefix tree of runs, Tables I-III, figure, resume, CLI errors."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli
from n2v_cascade import stages as stages_mod
from n2v_cascade.cascade import GTFreeOptions
from n2v_cascade.io import write_image
from n2v_cascade.reproduce import reproduce, run_chains, run_label, tables

TINY_BUDGET = {"base": {"patch_size": 16, "batch_size": 4, "steps_per_epoch": 2, "val_fraction": 0,
                        "network": {"depth": 2, "width": 8}, "mask": {"fraction": 0.02}},
               "epochs": 1, "retrain_epochs": 1}
GT = GTFreeOptions(n_masks=2)
TABLE2 = ["Structured N2V (2nd)", "Structured → ProbN2V", "Probabilistic N2V (2nd)",
          "ProbN2V → Structured"]


@pytest.fixture
def clean_dir(tmp_path, clean_image):
    folder = tmp_path / "clean"
    write_image(folder / "img0.tif", clean_image * 255)
    return folder


def test_run_tree_and_labels() -> None:
    chains = run_chains(["structured", "probabilistic"])
    assert len(chains) == 8 and chains[:2] == [("structured",), ("probabilistic",)]
    assert all(c[:-1] in chains or len(c) == 1 for c in chains)  # parents come first
    assert run_label(("probabilistic",) * 3) == "Probabilistic N2V (3rd)"
    assert run_label(("structured", "probabilistic")) == "Structured → ProbN2V"


def test_tiny_reproduce_writes_tables_and_figure(clean_dir, tmp_path, monkeypatch) -> None:
    out = tmp_path / "rep"
    summary = reproduce([clean_dir], out, noises=["gaussian:25"], budget=TINY_BUDGET,
                        variants=["structured", "probabilistic"], crop=32, progress=False,
                        gt_free=GT)
    folder = out / "gaussian-25"
    rows = json.loads((folder / "table1.json").read_text())
    assert [r["pass"] for r in rows] == ["1st", "2nd", "3rd"]
    assert all(r["run"].startswith("Probabilistic N2V") for r in rows)
    with open(folder / "table2.csv") as fh:
        assert [r["run"] for r in csv.DictReader(fh)] == TABLE2
    t3 = json.loads((folder / "table3.json").read_text())
    assert len(t3) == 8 and [r["psnr"] for r in t3] == sorted(r["psnr"] for r in t3)
    assert {"mse", "psnr", "ssim", "gt_free", "train_seconds"} <= set(t3[0])
    assert "Table III" in (folder / "table3.md").read_text()
    assert (folder / "figure2.png").stat().st_size > 1000
    assert (folder / "structured+probabilistic" / "img0.tif").is_file()
    res = summary["noise"]["gaussian:25"]
    assert res["spearman_gt_free_vs_mse"]["n"] == 8
    assert -1 <= res["spearman_gt_free_vs_mse"]["rho"] <= 1
    assert "Spearman" in (out / "summary.md").read_text()
    # resume: every run is reused, nothing is trained again
    calls = []
    monkeypatch.setattr(stages_mod, "train", lambda *a, **k: calls.append(1))
    again = reproduce([clean_dir], out, noises=["gaussian:25"], budget=TINY_BUDGET,
                      variants=["structured", "probabilistic"], crop=32, resume=True,
                      progress=False, gt_free=GT)
    assert calls == [] and all(r["reused"] for r in again["noise"]["gaussian:25"]["runs"])


def test_tables_follow_the_paper_rows() -> None:
    rows = [{"chain": "+".join(c), "run": run_label(c), "psnr": float(i), "mse": 1.0 / (i + 1)}
            for i, c in enumerate(run_chains(["structured", "probabilistic"]))]
    t = tables(rows)
    assert [r["run"] for r in t["table2"]] == TABLE2
    assert len(t["table1"]) == 3 and len(t["table3"]) == 8


@pytest.mark.parametrize("extra, message", [
    (["--budget", "huge"], "--budget"),
    (["--variants", "structured,nope"], "unknown method 'nope'"),
    (["--noise", "gauss:5"], "invalid noise spec"),
])
def test_cli_errors(clean_dir, tmp_path, capsys, extra, message) -> None:
    code, _, err = run_cli(["reproduce", "--clean", str(clean_dir), "-o", str(tmp_path / "o"),
                            *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_used_output(clean_dir, tmp_path, capsys) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "x.txt").write_text("x")
    code, _, err = run_cli(["reproduce", "--clean", str(clean_dir), "-o", str(used)], capsys)
    assert code == 2 and "--overwrite" in err
