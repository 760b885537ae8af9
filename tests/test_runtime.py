"""The device seam: device choice, loading onto a device, training hooks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from n2v_cascade.errors import InputError
from n2v_cascade.model import CHECKPOINT, Model
from n2v_cascade.runtime import resolve_device
from n2v_cascade.training import train

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_auto_picks_the_best_available_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU").type == "cpu"


@pytest.mark.parametrize("name, message", [("tpu", "unknown device"),
                                           ("cuda:99", "cuda:99")])
def test_unavailable_devices_are_refused_in_one_line(name, message) -> None:
    with pytest.raises(InputError, match=message) as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


def test_model_trained_here_loads_on_an_explicit_device(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    model = train(noisy, tiny_config(), output_dir=tmp_path / "m", progress=False,
                  device="cpu")
    assert model.device.type == "cpu"
    loaded = Model.load(tmp_path / "m", device="cpu")
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))


@CUDA
def test_cpu_model_predicts_alike_on_cuda_and_comes_back(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    train(noisy, tiny_config(), output_dir=tmp_path / "m", progress=False, device="cpu")
    on_cpu = Model.load(tmp_path / "m", device="cpu").denoise(noisy)
    on_gpu = Model.load(tmp_path / "m", device="cuda")
    np.testing.assert_allclose(on_gpu.denoise(noisy), on_cpu, atol=1e-4)
    on_gpu.save(tmp_path / "again")
    back = Model.load(tmp_path / "again", device="cpu")
    np.testing.assert_array_equal(back.denoise(noisy), on_cpu)


def test_callbacks_see_every_step_and_can_stop_training(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    seen = []

    def watch(info) -> bool:
        seen.append((info.step, info.total_steps, info.epoch, info.loss))
        return info.step == 7

    cfg = tiny_config(epochs=3, steps_per_epoch=5)
    model = train(noisy, cfg, output_dir=tmp_path / "m", progress=False, callbacks=[watch])
    assert [s[0] for s in seen] == list(range(1, 8))
    assert {s[1] for s in seen} == {15} and seen[-1][2] == 2
    assert model.history[-1]["stopped"] == "callback" and model.history[-1]["step"] == 2
    assert (tmp_path / "m" / CHECKPOINT).is_file() and (tmp_path / "m" / "model.json").is_file()


def test_time_limit_stop_then_resume_equals_one_uninterrupted_run(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=2, steps_per_epoch=4)
    whole = train(noisy, cfg, progress=False)
    stopped = train(noisy, cfg, output_dir=tmp_path / "m", progress=False, time_limit=1e-9)
    assert stopped.history[-1]["stopped"] == "time limit"  # after its first step
    resumed = train(noisy, cfg, output_dir=tmp_path / "m", progress=False, resume=True)
    assert [h.get("stopped") for h in resumed.history] == [None, None]
    np.testing.assert_array_equal(resumed.denoise(noisy), whole.denoise(noisy))
    with pytest.raises(InputError, match="time limit"):
        train(noisy, cfg, progress=False, time_limit=0)


def test_progress_in_a_log_is_plain_lines_with_the_time_left(noisy_pair, capsys) -> None:
    _, noisy = noisy_pair
    train(noisy, tiny_config(variant="probabilistic", epochs=2, steps_per_epoch=5),
          progress=True)
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err
    assert "train: 10/10 steps (100%)" in err and "left" in err
    assert "epoch 2/2: nll (can be < 0)" in err  # the loss is named for what it is


def test_denoising_one_image_shows_its_tiles(noisy_pair, tmp_path, capsys) -> None:
    import tifffile

    from conftest import run_cli

    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    train(noisy, tiny_config(), output_dir=tmp_path / "m", progress=False)
    code, _, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "--model",
                            str(tmp_path / "m"), "-o", str(tmp_path / "out.tif"),
                            "--tile", "32"], capsys)
    assert code == 0, err
    assert "predict: " in err and "tiles (100%)" in err
    code, _, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "--model",
                            str(tmp_path / "m"), "-o", str(tmp_path / "out.tif"),
                            "--tile", "32", "--overwrite", "-q"], capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize("speedup, expected", [(2.0, "bfloat16"), (0.5, "float32")])
def test_auto_precision_follows_the_measured_speed_on_a_cpu(monkeypatch, speedup, expected
                                                            ) -> None:
    from n2v_cascade import runtime

    monkeypatch.setattr(runtime, "cpu_bfloat16_speedup", lambda: speedup)
    precision, why = runtime.choose_precision("auto", runtime.HOST)
    assert precision == expected and f"{speedup:.1f}x" in why
    assert runtime.choose_precision("float32", runtime.HOST) == ("float32", "as asked")


def test_the_cpu_speed_probe_leaves_the_random_state_alone() -> None:
    from n2v_cascade import runtime

    runtime.cpu_bfloat16_speedup.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    speedup = runtime.cpu_bfloat16_speedup()
    assert torch.equal(torch.rand(3), expected) and speedup >= 0


def test_training_states_its_settings_and_saves_the_precision_it_used(
        noisy_pair, tmp_path, monkeypatch, capsys) -> None:
    from n2v_cascade import runtime

    _, noisy = noisy_pair
    monkeypatch.setattr(runtime, "cpu_bfloat16_speedup", lambda: 3.0)
    cfg = tiny_config(epochs=2, steps_per_epoch=3)
    assert cfg.precision == "auto"
    model = train(noisy, cfg, output_dir=tmp_path / "m", progress=True, time_limit=600,
                  callbacks=[lambda info: info.step == 2], device="cpu")
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith(f"training {cfg.variant}:"))
    for part in ("2 epochs x 3 steps (6 steps) of 4 patches 16x16", "depth 2 width 8",
                 "bfloat16 (3.0x faster than float32 on this CPU)", "cpu, ",
                 "1 image(s) 64x64", "time limit 0:10:00"):
        assert part in line, (part, line)
    assert model.config.precision == "bfloat16"
    assert Model.load(tmp_path / "m").config.precision == "bfloat16"
    # resumed where float32 would be chosen: the run keeps the checkpoint's precision
    monkeypatch.setattr(runtime, "cpu_bfloat16_speedup", lambda: 0.5)
    resumed = train(noisy, cfg, output_dir=tmp_path / "m", progress=False, resume=True)
    assert resumed.config.precision == "bfloat16"


def test_the_time_left_never_exceeds_the_time_limit(capsys) -> None:
    from n2v_cascade.progress import PlainProgress

    bar = PlainProgress(1_000_000, "train", "step", interval=0.0, limit=90.0)
    bar.update(1)
    err = capsys.readouterr().err
    left = err.split(" elapsed, ")[1].split(" left")[0]
    h, m, s = (int(v) for v in left.split(":"))
    assert 0 < h * 3600 + m * 60 + s <= 90


def test_a_run_of_two_phases_counts_on_and_keeps_its_own_time_limit(capsys) -> None:
    from n2v_cascade.progress import RunProgress

    run = RunProgress(2, limit=100.0, later_epochs=3, plan="then B")
    assert run.settings("training A") == "training A; then B"
    assert run.settings("training A", 30.0) == ("training A, time limit 0:01:40 for the run "
                                                "(0:00:30 for phase 1); then B")
    run.start(10, 4, 5)  # a resumed first phase: 4 of 10 steps done, then 3 epochs of 5
    assert (run.n, run.total) == (4, 25)
    for _ in range(6):
        run.update(loss="0.1")
    run.end(40.0)
    assert run.bar is not None and run.left(10.0) == 50.0  # the run's limit, not a phase's
    assert run.settings("training B") == "phase 2/2: training B"
    run.start(12, 0, 6)  # the second phase's real steps replace the estimate
    assert (run.n, run.total) == (10, 22)
    run.update()
    run.end(5.0)
    assert run.bar is None  # the last phase closed the bar
    counts = [x for x in capsys.readouterr().err.splitlines() if x.startswith("train")]
    assert counts and counts[-1].startswith("train 2/2: 11/22 steps"), counts


def test_convolutions_run_channels_last_except_3d_bfloat16_on_the_cpu() -> None:
    from n2v_cascade.runtime import autocast, fast_layout, place

    host = torch.device("cpu")
    net2, net3 = torch.nn.Conv2d(2, 4, 3), torch.nn.Conv3d(2, 4, 3)
    assert place(net2, host, "bfloat16").weight.is_contiguous(memory_format=torch.channels_last)
    assert place(net3, host).weight.is_contiguous(memory_format=torch.channels_last_3d)
    # oneDNN's bf16 3-D convolutions with channels-last weights give NaN gradients at times
    weight = place(net3, host, "bfloat16").weight
    assert weight.is_contiguous() and not weight.is_contiguous(
        memory_format=torch.channels_last_3d)
    x = torch.zeros(1, 2, 4, 6, 6)
    assert fast_layout(x).is_contiguous(memory_format=torch.channels_last_3d)
    with autocast(host, "bfloat16"):
        assert fast_layout(x).is_contiguous()
        assert fast_layout(x[:, :, 0]).is_contiguous(memory_format=torch.channels_last)


def test_float16_training_scales_the_loss_and_resumes_exactly(noisy_pair, tmp_path,
                                                              monkeypatch) -> None:
    from n2v_cascade import runtime

    _, noisy = noisy_pair
    cfg = tiny_config(epochs=2, steps_per_epoch=4, precision="float16")
    whole = train(noisy, cfg, progress=False)
    assert whole.config.precision == "float16" and np.isfinite(whole.denoise(noisy)).all()
    train(noisy, cfg, output_dir=tmp_path / "m", progress=False, time_limit=1e-9)
    saved = torch.load(tmp_path / "m" / CHECKPOINT, weights_only=False)["state"]["scaler"]
    assert saved["scale"] > 1  # the loss scale is kept for the resumed run
    resumed = train(noisy, cfg, output_dir=tmp_path / "m", progress=False, resume=True)
    np.testing.assert_array_equal(resumed.denoise(noisy), whole.denoise(noisy))
    # a CUDA GPU without bfloat16 gets float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert runtime.choose_precision("auto", torch.device("cuda"))[0] == "float16"


@pytest.mark.parametrize("command", [["demo"], ["reproduce", "--clean", "CLEAN"]])
def test_commands_that_run_networks_take_a_device(command, tmp_path, capsys) -> None:
    import tifffile

    from conftest import run_cli

    clean = tmp_path / "clean.tif"
    tifffile.imwrite(clean, np.random.default_rng(0).random((16, 16), np.float32))
    argv = [str(clean) if a == "CLEAN" else a for a in command]
    code, _, err = run_cli([*argv, "-o", str(tmp_path / "out"), "--device", "tpu"], capsys)
    assert code != 0 and "unknown device" in err and len(err.strip().splitlines()) == 1
