"""The benchmark's peer re-implementations (benchmarks/peers): interface, determinism,
denoising on a small synthetic image, the CAREamics subprocess wrapper and the report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.peers import PER_IMAGE, careamics_n2v, fm2s, noise2fast, zsn2n  # noqa: E402

from n2v_cascade.metrics import psnr  # noqa: E402

# a step cap per peer, so that runs are short and independent of the machine's speed
CAPPED = {"fm2s": {"rounds": 2}, "noise2fast": {"patience": 3, "max_steps": 6},
          "zs-n2n": {"iterations": 8}}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny networks gain nothing from more on a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _image(size: int) -> np.ndarray:
    """Smooth content with an edge on 0..255 (float32)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    img = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    img[size // 3: 2 * size // 3, size // 3: 2 * size // 3] += 0.2
    return (np.clip(img, 0, 1) * 255).astype(np.float32)


def _noisy(clean: np.ndarray, sigma: float = 25.0) -> np.ndarray:
    return (clean + np.random.default_rng(1).normal(0, sigma, clean.shape)).astype(np.float32)


@pytest.mark.parametrize("key", sorted(PER_IMAGE))
def test_output_keeps_shape_dtype_and_scale(key):
    noisy = _noisy(_image(34)[:, :33])  # odd width: the prediction still covers every pixel
    res = PER_IMAGE[key][1](noisy, seed=0, data_range=255.0, **CAPPED[key])
    assert res.output.shape == noisy.shape and res.output.dtype == np.float32
    assert np.all(np.isfinite(res.output))
    assert res.output.min() >= noisy.min() - 1e-3 and res.output.max() <= 255.0 + 1e-3
    assert abs(res.output.mean() - noisy.mean()) < 0.25 * noisy.mean()  # not left at 0..1
    assert res.steps > 0 and res.train_s > 0


@pytest.mark.parametrize("key", sorted(PER_IMAGE))
def test_seed_makes_runs_repeatable(key):
    noisy = _noisy(_image(32))
    fit = PER_IMAGE[key][1]
    a = fit(noisy, seed=3, data_range=255.0, **CAPPED[key]).output
    b = fit(noisy, seed=3, data_range=255.0, **CAPPED[key]).output
    c = fit(noisy, seed=4, data_range=255.0, **CAPPED[key]).output
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(("key", "size", "seconds"),
                         [("fm2s", 48, 1.0), ("noise2fast", 40, 2.5), ("zs-n2n", 48, 1.0)])
def test_improves_on_gaussian_noise(key, size, seconds):
    clean = _image(size)
    noisy = _noisy(clean)
    res = PER_IMAGE[key][1](noisy, seconds=seconds, seed=0, data_range=255.0)
    assert res.train_s >= seconds or res.finished  # the budget stops training
    assert psnr(res.output, clean, 255.0) > psnr(noisy, clean, 255.0) + 1.0


def test_zsn2n_pairs_average_the_two_diagonals():
    import torch

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    d1, d2 = zsn2n.pair_downsample(x)
    # top-left block [[0, 1], [4, 5]]: anti-diagonal (1 + 4) / 2, diagonal (0 + 5) / 2
    assert d1[0, 0, 0, 0].item() == 2.5 and d2[0, 0, 0, 0].item() == 2.5
    assert d1.shape == d2.shape == (1, 1, 2, 2)


def test_noise2fast_pairs_split_the_chequerboard():
    h, w = 6, 8
    ids = np.arange(h * w, dtype=np.float32).reshape(h, w)
    colour = (np.add.outer(np.arange(h), np.arange(w)) % 2).ravel()
    pairs = noise2fast.chequerboard_pairs(ids)
    assert [p[0].shape for p in pairs] == [(3, 8), (3, 8), (6, 4), (6, 4)]
    for inp, target in pairs:
        assert len(set(colour[inp.astype(int).ravel()])) == 1  # one colour per image
        assert colour[inp.astype(int).ravel()][0] != colour[target.astype(int).ravel()][0]
        assert sorted(np.concatenate([inp.ravel(), target.ravel()])) == list(range(h * w))


def test_fm2s_noise_is_adaptive_and_clipped():
    import torch

    clean = torch.full((1, 1, 150, 150), 0.3)
    clean[..., 75:] = 0.05  # a dark half: lower level, so more Poisson noise per unit
    noisy = fm2s.synthesise(clean, fm2s.PRESETS["confocal"], torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape and noisy.min() >= 0 and noisy.max() <= 1
    rel_bright = (noisy[..., :75].std() / 0.3).item()
    rel_dark = (noisy[..., 75:].std() / 0.05).item()
    assert rel_dark > rel_bright
    assert fm2s.preset_for("WideField_BPAE_G_1") == "widefield"
    with pytest.raises(ValueError, match="preset"):
        fm2s.fit(np.zeros((16, 16), np.float32), preset="nope")


def test_careamics_without_venv_says_why_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("N2V_PEERS_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(careamics_n2v.Unavailable, match="make peers-env") as info:
        careamics_n2v.train_predict([np.zeros((8, 8), np.float32)], seconds=1.0)
    assert "\n" not in str(info.value)


def test_report_renders_peers_with_an_unavailable_row():
    sec = {"dataset": {"name": "fmd-real", "description": "d", "names": ["A_1"],
                       "n_images": 1},
           "peer_budget_s": 5.0, "budget_s": 30.0, "careamics_settings": "s",
           "meta": {"date": "now", "command": "c", "suite": "quick", "threads": 1,
                    "wall_s": 1.0, "cpu_s": 1.0, "load": {}},
           "rows": [{"method": "noisy input", "kind": "input", "psnr": 20.0, "ssim": 0.5},
                    {"method": "ZS-N2N", "kind": "peer", "psnr": 25.0, "ssim": 0.7,
                     "train_s_per_image": 5.0, "predict_s_per_image": 0.5,
                     "steps_per_image": 10.0, "finished": 0, "n_images": 1},
                    {"method": "CAREamics N2V", "key": "careamics-n2v", "kind": "peer",
                     "unavailable": "cannot import careamics"}]}
    text = "\n".join(report.peers_lines(sec, {}))
    assert "| ZS-N2N | 25.00 | 0.7000 | 5.0 | 10 | 0.5 | 5.5 | 0/1 |" in text
    assert "not run: cannot import careamics" in text


def test_package_does_not_import_the_peers():
    for path in (ROOT / "src" / "n2v_cascade").rglob("*.py"):
        text = path.read_text()
        assert "import benchmarks" not in text and "from benchmarks" not in text, path
