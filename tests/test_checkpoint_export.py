"""An interrupted training folder: the message that explains it, and `finish`."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from conftest import run_cli, tiny_config
from n2v_cascade import training as train_mod
from n2v_cascade.checkpoint_export import export_checkpoint
from n2v_cascade.errors import ModelError, OutputExistsError
from n2v_cascade.model import CHECKPOINT, Model
from n2v_cascade.training import TrainingInterrupted, train


def _interrupted_run(noisy: np.ndarray, folder: Path, monkeypatch, **config) -> None:
    """Train until Ctrl-C arrives mid-way through epoch 2 (as a user's would)."""
    calls = {"n": 0}
    original = train_mod._Loop._step

    def step_then_ctrl_c(self):
        loss = original(self)
        calls["n"] += 1
        if calls["n"] == 6:
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(train_mod._Loop, "_step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted):
        train(noisy, tiny_config(epochs=3, steps_per_epoch=4, **config), output_dir=folder,
              progress=False)
    monkeypatch.setattr(train_mod._Loop, "_step", original)
    assert (folder / CHECKPOINT).is_file() and not (folder / "model.json").exists()


@pytest.mark.parametrize("config", [{"ema_decay": 0.9}, {"ema_decay": 0.0},
                                    {"variant": "probabilistic"}])
def test_interrupted_folder_is_explained_and_finished(noisy_pair, tmp_path, monkeypatch,
                                                      capsys, config) -> None:
    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    folder = tmp_path / "run"
    _interrupted_run(noisy, folder, monkeypatch, **config)

    with pytest.raises(ModelError) as info:
        Model.load(folder)
    cli_text = info.value.cli_message()
    assert cli_text == (f"{folder}: training was interrupted (checkpoint.pt but no model.json); "
                        f"finish it with 'n2v-cascade train IMAGES -o {folder} --resume' (same "
                        f"images and options), or save the checkpoint's weights as the model "
                        f"with 'n2v-cascade finish {folder} IMAGES'")
    assert str(info.value) == cli_text  # the quoted commands keep their flags
    code, _, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "-m", str(folder), "-o",
                            str(tmp_path / "out.tif")], capsys)
    assert code == 2 and err == f"error: {cli_text}\n"

    code, out, err = run_cli(["finish", str(folder), str(tmp_path / "noisy.tif")], capsys)
    assert code == 0, err
    assert out == f"model saved to {folder} from its checkpoint (1 of 3 epochs finished)\n"
    model = Model.load(folder)
    payload = torch.load(folder / CHECKPOINT, weights_only=True)
    if config.get("ema_decay", 0.99):  # the averaged weights, as training would save
        expected = {k.removeprefix("module."): v for k, v in payload["ema"].items()
                    if k.startswith("module.")}
    else:
        expected = payload["network"]
    got = model.network.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in got)
    # the normalisation (and noise model) are exactly those an uninterrupted run fits
    straight = train(noisy, tiny_config(epochs=1, steps_per_epoch=1, **config), progress=False)
    assert model.normalizer == straight.normalizer and model.noise == straight.noise
    assert [h["epoch"] for h in model.history] == [1]
    denoised = model.denoise(tmp_path / "noisy.tif")
    assert denoised.shape == noisy.shape and np.isfinite(denoised).all()


def test_finish_refuses_what_it_cannot_finish(noisy_pair, tmp_path) -> None:
    _, noisy = noisy_pair
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="empty: no checkpoint.pt to make a model from"):
        export_checkpoint(empty, noisy)
    done = tmp_path / "done"
    train(noisy, tiny_config(epochs=1, steps_per_epoch=1), output_dir=done, progress=False)
    before = (done / "weights.pt").read_bytes()
    with pytest.raises(OutputExistsError, match="already holds a finished model"):
        export_checkpoint(done, noisy)
    assert (done / "weights.pt").read_bytes() == before
    (empty / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(ModelError, match="checkpoint.pt: not a usable checkpoint"):
        export_checkpoint(empty, noisy)
    assert sorted(p.name for p in empty.iterdir()) == [CHECKPOINT]
