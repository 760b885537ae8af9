"""``train --processes N``: start N local training processes for one run and watch them.

Each process is a fresh ``python -m n2v_cascade`` with the command's own arguments and
the environment ``torchrun`` would give it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), so ``--processes`` and ``torchrun`` run the same code.
Fresh interpreters rather than forked or spawned functions: nothing is pickled, a child
that dies (even by SIGKILL) is just an exit code here, and its errors are printed by the
command line's own one-line handling. When one process fails, the others get a few
seconds to stop on their own (they notice the lost peer in their next collective), then
are terminated; Ctrl-C is passed on once to every process, so they stop together at the
same step and write a checkpoint. The module needs no torch: the command line checks
``--processes`` before anything heavy is imported.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from .errors import InputError

#: Set in the processes this module starts (they train; they do not launch again).
WORKER_ENV = "N2V_CASCADE_WORKER"
#: Seconds the other processes get to stop by themselves after one has failed.
GRACE_S = 10.0


def split_batch(batch_size: int, processes: int) -> int:
    """Patches per process: ``batch_size`` is the global batch, split evenly."""
    if processes < 1:
        raise InputError(f"--processes: must be at least 1, got {processes}")
    if batch_size % processes:
        raise InputError(f"--batch-size {batch_size} cannot be split evenly over {processes} "
                         f"processes (it is the batch of all processes together); use a "
                         f"multiple of {processes}")
    return batch_size // processes


def process_env() -> tuple[int, int, int, int]:
    """(rank, world size, local rank, local world size) from the environment that
    ``torchrun`` or :func:`launch` sets; (0, 1, 0, 1) without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return rank, world, int(os.environ.get("LOCAL_RANK", str(rank))), local_world


def needs_launch(processes: int | None, batch_size: int) -> bool:
    """Whether this command should start ``processes`` training processes itself.

    False in a process started by :func:`launch` (it trains) and for one process; a run
    already under ``torchrun`` must not be given ``--processes`` as well.
    """
    if processes is None:
        return False
    split_batch(batch_size, processes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get(WORKER_ENV) == "1":
        if world != processes:
            raise InputError(f"--processes {processes}: this process belongs to a run of "
                             f"{world} processes")
        return False
    if "WORLD_SIZE" in os.environ:
        raise InputError(f"--processes: this process was started by torchrun (WORLD_SIZE="
                         f"{world}); leave out --processes")
    return processes > 1


def _free_port() -> int:
    """A TCP port free now on this machine (rank 0 listens on it for the others)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent():
    """Linux: a function that makes the calling (child) process be killed when the
    launcher dies, so no orphan keeps training; None elsewhere. It is looked up here, in
    the launcher: the child between fork and exec must not import anything."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def launch(args: Sequence[str], processes: int, *, grace: float = GRACE_S,
           timeout: float | None = None) -> int:
    """Run ``python ARGS`` as ``processes`` ranks of one run; return the exit code.

    Rank 0 prints to this terminal; the others' output is kept and shown only when such a
    process fails on its own. The code is 0 when every process succeeded, else the first
    failure's (128 + N when it was killed by signal N; 124 when the run took longer than
    ``timeout`` seconds, for scripts and tests that must not wait forever).
    """
    port = str(_free_port())
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    procs, logs, die_with_parent = [], [], _die_with_parent()
    for rank in range(processes):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, WORKER_ENV: "1"}
        env.setdefault("OMP_NUM_THREADS", threads)  # as torchrun: no oversubscription
        log = None if rank == 0 else tempfile.TemporaryFile("w+")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, *args], env=env, stderr=log,
            stdout=None if rank == 0 else subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent))

    def forward(signum, frame):  # noqa: ARG001 - Ctrl-C reaches the launcher only
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ended, order = _watch(procs, grace,
                              None if timeout is None else time.monotonic() + timeout)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    try:
        return _report(procs, logs, ended, order)
    finally:
        for log in logs[1:]:
            log.close()


def _watch(procs: list[subprocess.Popen], grace: float,
           deadline: float | None) -> tuple[set[int], list[int]]:
    """Wait for every process; once one fails, end the rest (after ``grace`` seconds:
    SIGTERM, 5 s later SIGKILL), and all of them at the ``deadline``. Returns the ranks
    this launcher had to end (-1 in it: the deadline was reached) and the failed ranks in
    the order their failures were seen (the first is what stopped the run)."""
    failed_at: float | None = None
    ended: set[int] = set()
    order: list[int] = []
    while True:
        running = any(p.poll() is None for p in procs)
        seen = [r for r, p in enumerate(procs) if p.returncode not in (None, 0)
                and r not in order]
        order.extend(sorted(seen, key=lambda r: _self_inflicted(procs[r].returncode)))
        if not running:
            return ended, order
        now = time.monotonic()
        if deadline is not None and now > deadline and -1 not in ended:
            ended.add(-1)
            failed_at = now - grace
        if failed_at is None and order:
            failed_at = now
        elif failed_at is not None and now - failed_at > grace:
            for rank, p in enumerate(procs):
                if p.poll() is None:
                    with contextlib.suppress(OSError):
                        p.kill() if rank in ended else p.terminate()
                    ended.add(rank)
            failed_at = now - grace + 5.0
        time.sleep(0.05)


def _self_inflicted(code: int) -> bool:
    """Whether an exit code is a process's own doing rather than a signal from outside:
    a process that loses a killed peer often aborts (SIGABRT) in the same instant, and
    the kill, not the abort, is what a user needs to hear about."""
    return code > 0 or -code in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS)


def _report(procs: list[subprocess.Popen], logs: list, ended: set[int],
            order: list[int]) -> int:
    """Say what stopped the run (rank 0 prints its own errors) and pick the exit code:
    the first failure seen, a process killed from outside before one that failed."""
    codes = [p.returncode for p in procs]
    if -1 in ended:
        print("error: the training processes did not finish in time; they were stopped",
              file=sys.stderr)
        return 124
    failed = [r for r in order if r not in ended] or order
    if not failed:
        return 0
    rank = failed[0]
    if codes[rank] < 0:
        name = signal.Signals(-codes[rank]).name
        how = "crashed" if _self_inflicted(codes[rank]) else "was killed"
        print(f"error: training process {rank} {how} ({name}); the run "
              f"stopped. The last checkpoint continues the run with --resume",
              file=sys.stderr)
        return 128 - codes[rank]
    if rank > 0 and codes[rank] not in (2, 130):  # 2, 130: rank 0 says the same
        logs[rank].seek(0)
        lines = [line.rstrip() for line in logs[rank] if line.strip()]
        tail = lines[-1] if lines else f"exit code {codes[rank]}"
        print(f"error: training process {rank} failed: {tail}", file=sys.stderr)
    return codes[rank]
