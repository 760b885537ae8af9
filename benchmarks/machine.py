"""Machine description and run metadata (load, CPU time) for the results."""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    flags = set(match.group(1).split()) if match else set()
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "avx512f", "amx", "avx2")))


def _mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """CPU, memory and software versions."""
    import numpy
    import torch

    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "cpu_flags": _cpu_flags(),
        "mem_gb": _mem_gb(), "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "onednn": onednn.group(1) if onednn else "?",
        "numpy": numpy.__version__, "skimage": _version("scikit-image"),
        "bm3d": _version("bm3d"),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "benchmarks"],
                               cwd=root, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return rev + ("+dirty" if dirty.strip() else "")


class SectionTimer:
    """Wall/CPU seconds and load averages around one benchmark section."""

    def __init__(self, command: str, suite: str, threads: int) -> None:
        self.meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": command,
                     "suite": suite, "threads": threads, "git": git_revision(),
                     "load": {"start": load_average()}}
        self._wall = time.perf_counter()
        self._cpu = self._cpu_seconds()

    @staticmethod
    def _cpu_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime

    def finish(self) -> dict:
        self.meta["wall_s"] = time.perf_counter() - self._wall
        self.meta["cpu_s"] = self._cpu_seconds() - self._cpu
        self.meta["load"]["end"] = load_average()
        return self.meta
