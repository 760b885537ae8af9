"""Several processes training one model (DistributedDataParallel, gloo on the CPU).

Every multi-process run goes through ``launch`` with a deadline, so a hang fails the test
(exit code 124) instead of blocking; the process group's own timeout is 30 s here. The
runs are few and shared by module fixtures: each costs two fresh interpreters importing
torch, the bulk of this file's time.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import n2v_cascade
from conftest import run_cli, tiny_config
from n2v_cascade import launch as launch_mod
from n2v_cascade.distributed import Session, derived_seed
from n2v_cascade.errors import InputError
from n2v_cascade.io import write_image
from n2v_cascade.model import CHECKPOINT, Model
from n2v_cascade.run_settings import settings_line
from n2v_cascade.training import train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch built without torch.distributed")

DEADLINE_S = 150.0  # a multi-process run that takes longer has hung
RECIPE = ["--patch-size", "16", "--batch-size", "4", "--depth", "2", "--width", "8",
          "--mask-fraction", "0.02", "--precision", "float32", "--seed", "0", "-q"]
LONG = ["--epochs", "4", "--steps-per-epoch", "15"]  # long enough to be killed mid-way

# Run in each of two processes (and loaded by the test for one process): four trainings
# in one process group that the script starts itself (train() then uses it as it is).
SCRIPT = '''
import json, sys, time
import numpy as np
import torch
import torch.distributed as dist
from n2v_cascade.config import make_config
from n2v_cascade.data import PatchSampler
from n2v_cascade.training import train

ORIGINAL = PatchSampler.sample


def same_global_batch(world, rank):
    """Every process draws the same global batch and keeps its share of it."""
    shared = torch.Generator().manual_seed(1234)

    def sample(self, batch, generator):
        return ORIGINAL(self, batch * world, shared)[rank * batch:(rank + 1) * batch]
    return sample


def exact_recipe():  # blind-spot: no masks, so the data alone decide the step
    return make_config("test", variant="blindspot", patch_size=16, batch_size=4, epochs=2,
                       steps_per_epoch=6, seed=0, precision="float32",
                       network={"depth": 2, "width": 4, "blind_radius": 0})


def main(out, image):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    # n2v, the recipe of the command line's RECIPE + LONG, written by rank 0
    cfg = make_config("options", patch_size=16, batch_size=4, epochs=4, steps_per_epoch=15,
                      seed=0, precision="float32", network={"depth": 2, "width": 8},
                      mask={"fraction": 0.02})
    train(image, cfg, output_dir=f"{out}/reference", progress=False)
    PatchSampler.sample = same_global_batch(world, rank)
    model = train(image, exact_recipe(), progress=False)
    PatchSampler.sample = ORIGINAL
    if rank == 0:
        torch.save(model.network.state_dict(), f"{out}/exact.pt")
        json.dump(model.history, open(f"{out}/exact.json", "w"))
    # a callback in process 1 alone stops both at step 3 (Neighbor2Neighbor: two forwards)
    cfg = make_config("test", variant="neighbor2neighbor", patch_size=16, batch_size=4,
                      epochs=2, steps_per_epoch=10, precision="float32",
                      network={"depth": 2, "width": 4})
    stopped = train(image, cfg, progress=False, callbacks=[lambda i: rank == 1 and i.step == 3])
    # a time limit in process 1 alone (its steps made slow) stops both at one step
    slow = [lambda i: time.sleep(0.05) if rank == 1 else None]
    cfg = make_config("test", patch_size=16, batch_size=4, epochs=2, steps_per_epoch=100,
                      precision="float32", network={"depth": 2, "width": 4})
    timed = train(image, cfg, progress=False, time_limit=0.4 if rank == 1 else None,
                  callbacks=slow)
    json.dump({"callback": stopped.history[-1], "time": timed.history[-1]},
              open(f"{out}/stop-{rank}.json", "w"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''


@pytest.fixture(autouse=True)
def _one_thread():
    """Training in this process uses one thread: the started processes take the other
    core, and two threads on loaded cores made a 12-step run 10-50x slower here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _weights(state: dict) -> list[torch.Tensor]:
    return [v.detach().clone() for v in state.values()]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """What the started processes inherit: the package on the path, a short timeout."""
    with pytest.MonkeyPatch.context() as mp:
        src = str(Path(n2v_cascade.__file__).resolve().parents[1])
        mp.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
        mp.setenv("N2V_DIST_TIMEOUT", "30")
        mp.setattr(launch_mod, "GRACE_S", 5.0)
        yield tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def image(env) -> Path:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    img = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 0.1, (64, 64))
    path = env / "noisy.tif"
    write_image(path, img.astype(np.float32))
    return path


def _cli(args: list[str]) -> int:
    """The command line in this process; ``--processes`` starts the others from here,
    with a deadline."""
    from n2v_cascade.cli import main

    original = launch_mod.launch
    old, sys.argv = sys.argv, ["n2v-cascade", *args]
    launch_mod.launch = lambda *a, **k: original(*a, **{"timeout": DEADLINE_S, **k})
    try:
        main()
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv, launch_mod.launch = old, original


@pytest.fixture(scope="module")
def script_run(env, image) -> Path:
    """The API in two processes (SCRIPT)."""
    out = env / "script"
    out.mkdir()
    (out / "run.py").write_text(SCRIPT)
    code = launch_mod.launch([str(out / "run.py"), str(out), str(image)], 2,
                             timeout=DEADLINE_S)
    assert code == 0
    return out


@pytest.fixture(scope="module")
def reference(script_run) -> Path:
    """An uninterrupted two-process n2v run (4 epochs of 15 steps)."""
    return script_run / "reference"


def test_two_processes_train_one_model(reference, image) -> None:
    # one model and one checkpoint, written once, that load; the checkpoint holds both
    # processes' random streams (different ones)
    assert sorted(p.name for p in reference.iterdir()) == [
        CHECKPOINT, "config.yaml", "model.json", "weights.pt"]
    model = Model.load(reference)
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4]
    assert model.history[-1]["train_loss"] < model.history[0]["train_loss"]
    assert model.config.batch_size == 4  # the global batch: 2 patches per process
    assert model.denoise(np.zeros((32, 32), np.float32)).shape == (32, 32)
    ranks = torch.load(reference / CHECKPOINT, weights_only=True)["ranks"]
    assert ranks["world_size"] == 2
    assert not torch.equal(ranks["generators"][0], ranks["generators"][1])


def _kill_rank_after_checkpoint(ckpt: Path, rank: int, killed: list) -> None:
    """SIGKILL process ``rank`` (a child of this one) once ``ckpt`` exists."""
    end = time.monotonic() + DEADLINE_S
    while not ckpt.exists() and time.monotonic() < end:
        time.sleep(0.02)
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in environ and b"N2V_CASCADE_WORKER=1" in environ:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank in /proc")
def test_a_killed_process_stops_the_run_and_resume_finishes_it(reference, image, env,
                                                                capfd) -> None:
    out = env / "killed"
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_rank_after_checkpoint,
                               args=(out / CHECKPOINT, 1, killed))
    watcher.start()
    code = _cli(["train", str(image), "-o", str(out), *RECIPE, *LONG, "--processes", "2"])
    watcher.join()
    err = capfd.readouterr().err
    assert killed and code == 128 + signal.SIGKILL, err
    assert "training process 1 was killed (SIGKILL)" in err
    saved = torch.load(out / CHECKPOINT, weights_only=True)
    assert 1 <= saved["state"]["epoch"] < 4, "the run ended before the kill"
    assert not (out / "model.json").exists()
    one = env / "killed-1"
    shutil.copytree(out, one)

    # the same count continues each process's stream: the uninterrupted run's weights
    assert _cli(["train", str(image), "-o", str(out), "--resume", "-q",
                 "--processes", "2"]) == 0
    both = torch.load(out / "weights.pt", weights_only=True)
    ref = torch.load(reference / "weights.pt", weights_only=True)
    for a, b in zip(_weights(both), _weights(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    # one process: its stream is derived from the seed and the step reached
    assert _cli(["train", str(image), "-o", str(one), "--resume", "-q"]) == 0
    model = Model.load(one)
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4]
    assert torch.load(one / CHECKPOINT, weights_only=True)["ranks"] == {"world_size": 1}


def test_same_global_batch_gives_the_weights_of_one_process(script_run, image, env,
                                                            monkeypatch) -> None:
    # with the data of the global batch shared out, DDP's averaged gradient is the
    # gradient of one process's batch: the weights after 12 steps agree to float error
    # (a statistical loss comparison would be weaker and noisier on so few steps)
    module = runpy.run_path(str(script_run / "run.py"), run_name="test")
    monkeypatch.setattr(module["PatchSampler"], "sample", module["same_global_batch"](1, 0))
    one = train(str(image), module["exact_recipe"](), progress=False)
    two = torch.load(script_run / "exact.pt", weights_only=True)
    for a, b in zip(_weights(one.network.state_dict()), _weights(two), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    losses = [h["train_loss"] for h in json.loads((script_run / "exact.json").read_text())]
    np.testing.assert_allclose([h["train_loss"] for h in one.history], losses, rtol=1e-4)


def test_the_stop_decision_is_shared(script_run) -> None:
    # a callback or a time limit in one process stops both at the same step, cleanly
    first, second = (json.loads((script_run / f"stop-{r}.json").read_text()) for r in (0, 1))
    for run in (first, second):
        assert run["callback"]["stopped"] == "callback" and run["callback"]["step"] == 3
        assert run["time"]["stopped"] == "time limit"
    assert first["time"]["step"] == second["time"]["step"] < 100
    assert first["callback"]["train_loss"] == second["callback"]["train_loss"]


def test_the_settings_line_states_the_split_and_the_learning_rate() -> None:
    cfg = tiny_config(batch_size=8)
    line = settings_line(cfg, 5, torch.device("cpu"), "as asked", [np.zeros((64, 64))],
                         processes=4)
    assert "of 8 patches 16x16 (4 processes x 2), lr 0.001 (not scaled" in line
    assert "processes" not in settings_line(cfg, 5, torch.device("cpu"), "as asked",
                                            [np.zeros((64, 64))])


def test_a_batch_that_does_not_split_is_refused_before_any_process_starts(
        image, tmp_path, capsys) -> None:
    code, _, err = run_cli(["train", str(image), "-o", str(tmp_path / "m"), *RECIPE,
                            "--processes", "3"], capsys)
    assert code == 2 and "--batch-size 4 cannot be split evenly over 3 processes" in err
    assert not (tmp_path / "m").exists()
    with pytest.raises(InputError, match="split evenly over 3"):  # and under torchrun
        Session(0, 3).batch(4)


def test_processes_under_torchrun_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="started by torchrun"):
        launch_mod.needs_launch(2, 4)
    monkeypatch.setenv(launch_mod.WORKER_ENV, "1")
    assert launch_mod.needs_launch(2, 4) is False  # a started process trains


def test_random_streams_on_resume_follow_the_process_count() -> None:
    state = [torch.Generator().manual_seed(s).get_state() for s in (7, 8)]
    saved = {"world_size": 2, "generators": state}
    gen = torch.Generator().manual_seed(0)
    Session(1, 2).seed_generator(gen, 5, 40, saved)  # same count: its own stream goes on
    assert torch.equal(gen.get_state(), state[1])
    Session(1, 3).seed_generator(gen, 5, 40, saved)  # another count: derived from the step
    assert torch.equal(gen.get_state(),
                       torch.Generator().manual_seed(derived_seed(5, 1, 40)).get_state())
    Session(0, 1).seed_generator(gen, 5, 40, saved)  # one process after two: derived too
    assert torch.equal(gen.get_state(),
                       torch.Generator().manual_seed(derived_seed(5, 0, 40)).get_state())
    fresh = torch.Generator().manual_seed(5)
    Session(0, 1).seed_generator(fresh, 5, 0, None)  # one process, new run: plain seed
    assert torch.equal(fresh.get_state(), torch.Generator().manual_seed(5).get_state())
    Session(0, 2).seed_generator(fresh, 5, 0, None)  # new run of two: rank 0 derived
    assert torch.equal(fresh.get_state(),
                       torch.Generator().manual_seed(derived_seed(5, 0, 0)).get_state())
    assert derived_seed(5, 0, 0) != derived_seed(5, 1, 0) != derived_seed(5, 0, 40)


class _Ended:
    """A finished process as ``launch`` sees it: ``poll`` gives its exit code."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode

    def poll(self) -> int:
        return self.returncode


def test_a_kill_seen_with_the_abort_it_caused_is_what_is_reported(capsys) -> None:
    # a peer that loses a killed process can abort in the same instant: the kill stopped
    # the run, so its signal and exit code are reported, whichever rank it hit
    for codes, rank in (([-signal.SIGABRT, -signal.SIGKILL], 1),
                        ([-signal.SIGKILL, -signal.SIGABRT], 0)):
        procs = [_Ended(c) for c in codes]
        ended, order = launch_mod._watch(procs, 5.0, None)
        assert launch_mod._report(procs, [None, None], ended, order) == 128 + signal.SIGKILL
        assert f"training process {rank} was killed (SIGKILL)" in capsys.readouterr().err
    procs = [_Ended(0), _Ended(-signal.SIGSEGV)]  # alone, a process's own signal is a crash
    ended, order = launch_mod._watch(procs, 5.0, None)
    assert launch_mod._report(procs, [None, None], ended, order) == 128 + signal.SIGSEGV
    assert "training process 1 crashed (SIGSEGV)" in capsys.readouterr().err
    procs = [_Ended(2), _Ended(0)]  # rank 0 refused the input: its own message stands
    ended, order = launch_mod._watch(procs, 5.0, None)
    assert launch_mod._report(procs, [None, None], ended, order) == 2
    assert capsys.readouterr().err == ""
