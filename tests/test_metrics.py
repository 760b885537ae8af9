"""Metrics agree with scikit-image, use the given data range, and write result files safely."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from n2v_cascade.errors import InputError, OutputExistsError
from n2v_cascade.metrics import (
    default_data_range,
    evaluate,
    format_table,
    mse,
    psnr,
    ssim,
    write_metrics,
)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) camera crops as float64 in 0..255."""
    clean = data.camera()[:128, :128].astype(np.float64)
    noisy = clean + np.random.default_rng(0).normal(0, 20, clean.shape)
    return noisy, clean


def test_agrees_with_skimage(pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = pair
    assert mse(noisy, clean) == pytest.approx(mean_squared_error(clean, noisy), rel=1e-6)
    expected_psnr = peak_signal_noise_ratio(clean, noisy, data_range=255)
    assert psnr(noisy, clean, 255) == pytest.approx(expected_psnr, rel=1e-6)
    expected_ssim = structural_similarity(noisy, clean, data_range=255)
    assert ssim(noisy, clean, 255) == pytest.approx(expected_ssim, rel=1e-6)


def test_identical_images() -> None:
    img = data.camera()[:32, :32]
    assert mse(img, img) == 0.0
    assert psnr(img, img, 255) == math.inf
    assert ssim(img, img, 255) == pytest.approx(1.0)


def test_psnr_of_constant_offset_by_hand() -> None:
    ref = np.full((16, 16), 100.0)
    assert mse(ref + 5, ref) == pytest.approx(25.0)
    assert psnr(ref + 5, ref, 255) == pytest.approx(10 * math.log10(255**2 / 25))
    assert psnr(ref + 5, ref, 1000) == pytest.approx(10 * math.log10(1000**2 / 25))


def test_data_range_is_used_explicitly(pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = pair
    # Float data in 0..255: skimage's dtype guess would be wrong; ours follows the argument.
    assert psnr(noisy, clean, 255) - psnr(noisy, clean, 1.0) == pytest.approx(20 * math.log10(255))
    assert ssim(noisy, clean, 255) != pytest.approx(ssim(noisy, clean, 1.0))


def test_ssim_of_stack_is_mean_of_slices(pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = pair
    stack_noisy = np.stack([noisy, clean + 3, noisy[::-1]])
    stack_clean = np.stack([clean, clean, clean[::-1]])
    slices = [ssim(a, b, 255) for a, b in zip(stack_noisy, stack_clean, strict=True)]
    assert ssim(stack_noisy, stack_clean, 255) == pytest.approx(np.mean(slices), rel=1e-12)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], 1.0),
        ([0.0, 0.0, 0.0], 1.0),
        ([0.0, 2.0, 255.0], 255.0),
        ([3.0, 200.0], 255.0),
        ([0.0, 256.0], 65535.0),
        ([10.0, 4095.0], 65535.0),
        ([-1.0, 3.0], 4.0),
        ([0.0, 70000.0], 70000.0),
        ([-2.0, -2.0], 1.0),
    ],
)
def test_default_data_range(values: list[float], expected: float) -> None:
    assert default_data_range(np.array(values)) == expected


def test_evaluate(pair: tuple[np.ndarray, np.ndarray]) -> None:
    noisy, clean = pair
    result = evaluate(noisy, clean)
    assert set(result) == {"mse", "psnr", "ssim", "data_range"}
    assert result["data_range"] == 255.0
    assert result["psnr"] == pytest.approx(psnr(noisy, clean, 255))
    assert evaluate(noisy, clean, data_range=1000)["data_range"] == 1000


def test_mismatched_shapes_name_both_shapes_and_source() -> None:
    with pytest.raises(InputError) as info:
        evaluate(np.zeros((8, 9)), np.zeros((9, 8)), source="out/img1.tif")
    message = str(info.value)
    assert "(8, 9)" in message and "(9, 8)" in message and "out/img1.tif" in message
    with pytest.raises(InputError, match=r"\(3, 3\).*\(4, 4\)"):
        mse(np.zeros((3, 3)), np.zeros((4, 4)))


@pytest.mark.parametrize("data_range", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_data_range(data_range: float) -> None:
    img = np.ones((8, 8))
    with pytest.raises(InputError, match="data_range"):
        psnr(img, img + 1, data_range)


def test_evaluate_rejects_nan_and_tiny_images() -> None:
    with pytest.raises(InputError, match="denoised contains NaN"):
        evaluate(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(InputError, match="at least 7x7"):
        evaluate(np.zeros((5, 5)), np.zeros((5, 5)))


def test_format_table() -> None:
    rows = [
        {"method": "n2v", "mse": 12.3456789, "psnr": 31.23456, "ssim": 0.912345},
        {"method": "raw", "mse": np.float32(0.0001234567), "psnr": math.inf, "ssim": None},
    ]
    table = format_table(rows)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].split("|")[1].strip() == "method"
    assert set(lines[1]) <= {"|", "-", ":", " "}
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells == ["n2v", "12.3457", "31.23", "0.9123"]
    cells = [c.strip() for c in lines[3].split("|")[1:-1]]
    assert cells == ["raw", "0.000123457", "inf", ""]
    assert format_table(rows, columns=["psnr"]).splitlines()[2].strip("| ") == "31.23"


def test_write_json_and_csv(tmp_path: Path) -> None:
    rows = [{"name": "a", "psnr": 30.5, "ssim": np.float64(0.9)}, {"name": "b", "psnr": math.inf}]
    json_path = write_metrics(tmp_path / "m.json", rows)
    loaded = json.loads(json_path.read_text())
    assert loaded[0] == {"name": "a", "psnr": 30.5, "ssim": 0.9}
    assert loaded[1]["psnr"] == "inf"

    csv_path = write_metrics(tmp_path / "sub" / "m.csv", rows)
    with csv_path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert read[0] == {"name": "a", "psnr": "30.5", "ssim": "0.9"}
    assert float(read[1]["psnr"]) == math.inf and read[1]["ssim"] == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["m.csv", "m.json", "sub"]


def test_write_refuses_existing_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("old")
    with pytest.raises(OutputExistsError, match="m.json"):
        write_metrics(path, [{"psnr": 1.0}])
    assert path.read_text() == "old"
    write_metrics(path, [{"psnr": 1.0}], overwrite=True)
    assert json.loads(path.read_text()) == [{"psnr": 1.0}]
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp files left


def test_write_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.json or \.csv"):
        write_metrics(tmp_path / "m.txt", [{"psnr": 1.0}])
