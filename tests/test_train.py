"""The training loop: learning, checkpoints, Ctrl-C and resume, divergence."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from conftest import tiny_config
from n2v_cascade import training as train_mod
from n2v_cascade.errors import OutputExistsError, TrainingDivergedError
from n2v_cascade.model import CHECKPOINT
from n2v_cascade.schedule import lr_factor
from n2v_cascade.training import TrainingInterrupted, train


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.network.state_dict().values()]


def test_training_reduces_loss_and_is_reproducible(noisy_pair) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=6, steps_per_epoch=20, mask={"fraction": 0.05})
    a = train(noisy, cfg, progress=False)
    assert len(a.history) == 6
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert a.history[-1]["val_loss"] is not None
    b = train(noisy, cfg, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))


@pytest.mark.parametrize(("ema", "schedule"), [(0.0, "constant"), (0.9, "constant"),
                                               (0.9, "cosine")])
def test_ctrl_c_writes_checkpoint_and_resume_is_bit_identical(noisy_pair, tmp_path,
                                                              monkeypatch, ema,
                                                              schedule) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=3, steps_per_epoch=4, ema_decay=ema, lr_schedule=schedule)
    straight = train(noisy, cfg, output_dir=tmp_path / "a", progress=False)

    calls = {"n": 0}
    original = train_mod._Loop._step

    def step_then_ctrl_c(self):
        loss = original(self)
        calls["n"] += 1
        if calls["n"] == 6:  # mid-way through epoch 2
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(train_mod._Loop, "_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="epoch 2, step 2.*resume=True"):
        train(noisy, cfg, output_dir=tmp_path / "b", progress=False)
    assert (tmp_path / "b" / CHECKPOINT).exists()
    assert not (tmp_path / "b" / "model.json").exists()
    monkeypatch.setattr(train_mod._Loop, "_step", original)
    resumed = train(noisy, cfg, output_dir=tmp_path / "b", resume=True, progress=False)
    assert all(torch.equal(x, y)
               for x, y in zip(_weights(straight), _weights(resumed), strict=True))
    assert [h["train_loss"] for h in straight.history] == [
        h["train_loss"] for h in resumed.history]


def test_existing_output_is_refused(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=1)
    train(noisy, cfg, output_dir=tmp_path / "m", progress=False)
    before = (tmp_path / "m" / "weights.pt").read_bytes()
    with pytest.raises(OutputExistsError, match="resume=True to continue or overwrite=True"):
        train(noisy, cfg, output_dir=tmp_path / "m", progress=False)
    assert (tmp_path / "m" / "weights.pt").read_bytes() == before


def test_divergence_stops_with_epoch_and_keeps_checkpoint(noisy_pair, tmp_path,
                                                         monkeypatch) -> None:
    _, noisy = noisy_pair
    cfg = tiny_config(epochs=3, steps_per_epoch=3)
    calls = {"n": 0}
    original = train_mod._Loop._step

    def nan_in_epoch_two(self):
        calls["n"] += 1
        return float("nan") if calls["n"] == 5 else original(self)

    monkeypatch.setattr(train_mod._Loop, "_step", nan_in_epoch_two)
    with pytest.raises(TrainingDivergedError, match="epoch 2.*learning-rate.*checkpoint kept"):
        train(noisy, cfg, output_dir=tmp_path / "d", progress=False)
    saved = torch.load(tmp_path / "d" / CHECKPOINT, weights_only=False)
    assert saved["state"]["epoch"] == 1
    assert all(np.isfinite(h["train_loss"]) for h in saved["state"]["history"])


def test_noise_model_error_names_the_file(tmp_path) -> None:
    # a probabilistic model estimates its noise model per file; a file too small for
    # the Poisson-Gaussian fit must be named, and nothing may be written
    from n2v_cascade.errors import InputError
    from n2v_cascade.io import write_image

    rng = np.random.default_rng(0)
    big, small = tmp_path / "big.tif", tmp_path / "small.tif"
    write_image(big, rng.normal(100, 10, (64, 64)).astype(np.float32))
    write_image(small, rng.normal(100, 10, (16, 24)).astype(np.float32))
    cfg = tiny_config(variant="probabilistic", noise_model={"kind": "poisson-gaussian"},
                      val_fraction=0.0)
    out = tmp_path / "model"
    with pytest.raises(InputError, match=r"small\.tif: .*too small to fit a noise model"):
        train([str(big), str(small)], cfg, output_dir=out, progress=False)
    assert not out.exists()


def test_resume_with_more_epochs_equals_one_longer_run(noisy_pair, tmp_path) -> None:
    # "train longer": a finished 2-epoch run resumed to 4 epochs must give the weights of
    # a 4-epoch run; fewer epochs than already trained, or any other change, is refused
    from n2v_cascade.errors import InputError

    _, noisy = noisy_pair
    long = train(noisy, tiny_config(epochs=4, steps_per_epoch=3), progress=False)
    train(noisy, tiny_config(epochs=2, steps_per_epoch=3), output_dir=tmp_path / "m",
          progress=False)
    with pytest.raises(InputError, match="already trained 2 epochs"):
        train(noisy, tiny_config(epochs=1, steps_per_epoch=3), output_dir=tmp_path / "m",
              resume=True, progress=False)
    with pytest.raises(InputError, match=r"different config \(learning_rate\)"):
        train(noisy, tiny_config(epochs=4, steps_per_epoch=3, learning_rate=0.01),
              output_dir=tmp_path / "m", resume=True, progress=False)
    resumed = train(noisy, tiny_config(epochs=4, steps_per_epoch=3),
                    output_dir=tmp_path / "m", resume=True, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(long), _weights(resumed), strict=True))
    assert len(resumed.history) == 4 and resumed.config.epochs == 4


def test_ema_model_gets_the_warmed_up_moving_average(noisy_pair, monkeypatch) -> None:
    # the saved weights are the EMA of the raw weights after each step, with the decay
    # warming up as min(decay, (1 + n) / (10 + n)); validation scores those weights
    _, noisy = noisy_pair
    decay, raw = 0.8, []
    original = train_mod._Loop._step

    def step_and_record(self):
        loss = original(self)
        raw.append([p.detach().clone() for p in self.network.parameters()])
        return loss

    monkeypatch.setattr(train_mod._Loop, "_step", step_and_record)
    model = train(noisy, tiny_config(epochs=2, steps_per_epoch=5, ema_decay=decay),
                  progress=False)
    expected = [p.clone() for p in raw[0]]
    for n, weights in enumerate(raw[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        expected = [e * d + w * (1 - d) for e, w in zip(expected, weights, strict=True)]
    got = list(model.network.parameters())
    assert all(torch.allclose(g, e, atol=1e-6) for g, e in zip(got, expected, strict=True))
    assert not all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, raw[-1], strict=True))


def test_lr_factor_constant_and_cosine() -> None:
    assert lr_factor("constant", 0.7) == 1.0
    assert [lr_factor("cosine", f) for f in (0.0, 0.5, 1.0, 1.5)] == pytest.approx(
        [1.0, 0.5, 0.0, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        lr_factor("step", 0.5)


class _Budget:
    """A budget callback that reports scripted fractions done and stops after them."""

    def __init__(self, fractions: list[float]) -> None:
        self.fractions, self.calls = fractions, 0

    def progress(self) -> float:
        return self.fractions[self.calls]

    def __call__(self, info) -> bool:
        self.calls += 1
        return self.calls == len(self.fractions)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_follows_steps_budget_callbacks_and_never_goes_back(
        noisy_pair, monkeypatch, schedule) -> None:
    _, noisy = noisy_pair
    rates: list[float] = []
    original = train_mod._Loop._step

    def step_and_record(self):
        rates.append(self.optimizer.param_groups[0]["lr"])
        return original(self)

    monkeypatch.setattr(train_mod._Loop, "_step", step_and_record)
    cfg = tiny_config(epochs=1, steps_per_epoch=4, lr_schedule=schedule, learning_rate=0.01)
    train(noisy, cfg, progress=False)  # by the steps: 0, 1/4, 2/4, 3/4 done
    # a budget callback ahead of the steps leads; a fraction lower than before is ignored
    budget = _Budget([0.0, 0.6, 0.2, 0.9])
    train(noisy, cfg.model_copy(update={"steps_per_epoch": 1000}), progress=False,
          callbacks=[budget])
    want = [lr_factor(schedule, f) for f in (0, 0.25, 0.5, 0.75, 0, 0.6, 0.6, 0.9)]
    assert rates == pytest.approx([0.01 * w for w in want])
    assert len(set(rates)) == (1 if schedule == "constant" else 6)
