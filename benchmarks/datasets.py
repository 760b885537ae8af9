"""Benchmark data sets: clean references and fixed (seeded) noise realisations.

The shared data live outside the repository (``/work/shared/data``, override with the
environment variable ``N2V_BENCH_DATA``) and are only read, never copied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from n2v_cascade.io import read_image
from n2v_cascade.metrics import default_data_range

NOISE_SEED = 20261124  # one base seed; image i gets NOISE_SEED + i
BSD_SIGMA = 25.0
POISSON_PEAK = 30.0
FMD_CATEGORIES = (
    "Confocal_BPAE_B", "Confocal_BPAE_G", "Confocal_BPAE_R", "Confocal_FISH", "Confocal_MICE",
    "TwoPhoton_BPAE_B", "TwoPhoton_BPAE_G", "TwoPhoton_BPAE_R", "TwoPhoton_MICE",
    "WideField_BPAE_B", "WideField_BPAE_G", "WideField_BPAE_R",
)


def data_root() -> Path:
    """Folder holding the shared benchmark data."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("N2V_BENCH_DATA", default))


@dataclass
class Dataset:
    """Noisy images, their clean references and what is known about the noise.

    ``noise_model`` holds the values for the probabilistic variant's ``noise_model``
    config (true parameters for synthetic noise, ``kind`` only for real noise, whose
    parameters the package then estimates). ``gat`` gives ``(a, b)`` of the noise
    variance ``a * signal + b`` for the BM3D variance-stabilising transform, or ``None``
    for Gaussian noise (``sigma`` is then the true standard deviation).
    """

    name: str
    description: str
    names: list[str]
    clean: list[np.ndarray]
    noisy: list[np.ndarray]
    data_range: float
    noise_model: dict
    sigma: float | None = None
    gat: tuple[float, float] | None = None
    real_noise: bool = False
    extra: dict = field(default_factory=dict)
    # Indices of images that share one model (None: one model for the whole set). FMD
    # pools the frames of one microscope type, as a user trains on one instrument's data.
    groups: list[list[int]] | None = None

    @property
    def n_pixels(self) -> int:
        return int(sum(im.size for im in self.noisy))


def bsd68(quick: bool) -> Dataset:
    """BSD68 with additive Gaussian noise, sigma 25 on 0..255, clipped to 0..255.

    Clipping matches the reference measurements quoted in the issue (noisy 20.49 dB on
    test001-004); N2V's own protocol does not clip (about 20.17 dB).
    """
    folder = data_root() / "bsd68"
    files = sorted(folder.glob("test*.png"))[: 4 if quick else None]
    clean = [read_image(f) for f in files]
    noisy = [
        np.clip(c + np.random.default_rng(NOISE_SEED + i).normal(0.0, BSD_SIGMA, c.shape),
                0.0, 255.0).astype(np.float32)
        for i, c in enumerate(clean)
    ]
    return Dataset(
        name="bsd68-gauss25", description=f"BSD68 {'test001-004' if quick else 'all 68'}, "
        f"Gaussian sigma {BSD_SIGMA:g} (0..255, clipped)",
        names=[f.stem for f in files], clean=clean, noisy=noisy, data_range=255.0,
        noise_model={"kind": "gaussian", "sigma": BSD_SIGMA}, sigma=BSD_SIGMA)


def fmd(quick: bool) -> Dataset:
    """FMD real noisy frames (``raw/``) against the 50-frame averages (``gt/``)."""
    folder = data_root() / "fmd_testset"
    if quick:
        stems = [f"{cat}_1" for cat in FMD_CATEGORIES]
    else:
        stems = sorted(p.stem for p in (folder / "raw").glob("*.png"))
    noisy = [read_image(folder / "raw" / f"{s}.png") for s in stems]
    clean = [read_image(folder / "gt" / f"{s}.png") for s in stems]
    which = "frame 1 of each of the 12 categories" if quick else "all 48 frames"
    return Dataset(
        name="fmd-real", description=f"FMD real noise, {which} (raw vs 50-frame average)",
        names=stems, clean=clean, noisy=noisy, data_range=255.0,
        noise_model={"kind": "poisson-gaussian"}, real_noise=True,
        groups=group_by_prefix(stems))


def fmd_frames(frames: list[int], categories: list[str] | None = None) -> Dataset:
    """FMD frames ``frames`` (1-4) of the categories whose names contain one of
    ``categories`` (case-insensitive; all 12 when ``None``), in category order."""
    folder = data_root() / "fmd_testset"
    wanted = [c.lower() for c in categories or []]
    cats = [c for c in FMD_CATEGORIES if not wanted or any(w in c.lower() for w in wanted)]
    if not cats:
        raise ValueError(f"no FMD category matches {categories}; known: {FMD_CATEGORIES}")
    if not frames or any(f not in (1, 2, 3, 4) for f in frames):
        raise ValueError(f"FMD frames are numbered 1-4, got {frames}")
    stems = [f"{cat}_{f}" for cat in cats for f in frames]
    noisy = [read_image(folder / "raw" / f"{s}.png") for s in stems]
    clean = [read_image(folder / "gt" / f"{s}.png") for s in stems]
    which = ("all 12 categories" if len(cats) == len(FMD_CATEGORIES) else
             f"the {len(cats)} categories matching {', '.join(categories or [])}")
    return Dataset(
        name="fmd-real", description=f"FMD real noise, frame(s) {','.join(map(str, frames))} "
        f"of {which} (raw vs 50-frame average)", names=stems, clean=clean, noisy=noisy,
        data_range=255.0, noise_model={"kind": "poisson-gaussian"}, real_noise=True,
        groups=group_by_prefix(stems))


def group_by_prefix(names: list[str]) -> list[list[int]]:
    """Indices grouped by the name's first ``_`` field (FMD: Confocal, TwoPhoton, WideField)."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name.split("_")[0], []).append(i)
    return list(groups.values())


def _poisson(name: str, description: str, files: list[Path]) -> Dataset:
    """Poisson noise with the data set's maximum mapped to ``POISSON_PEAK`` photons."""
    clean = [read_image(f) for f in files]
    top = max(float(c.max()) for c in clean)
    scale = POISSON_PEAK / top
    noisy = [
        (np.random.default_rng(NOISE_SEED + i).poisson(np.clip(c, 0, None) * scale) / scale)
        .astype(np.float32)
        for i, c in enumerate(clean)
    ]
    a = 1.0 / scale  # variance = a * signal in image units
    return Dataset(
        name=name, description=description, names=[f.stem for f in files], clean=clean,
        noisy=noisy, data_range=default_data_range(np.array([0.0, top])),
        noise_model={"kind": "poisson-gaussian", "a": a, "b": 0.0}, gat=(a, 0.0),
        extra={"peak": POISSON_PEAK, "image_max": top})


def cellprofiler(quick: bool) -> Dataset:
    """CellProfiler ExampleHuman channels with Poisson noise (peak 30)."""
    files = sorted((data_root() / "cellprofiler_example_human").glob("*.tif"))
    files = files[:1] if quick else files
    what = "DNA channel d0" if quick else "channels d0-d2"
    return _poisson("cellprofiler-poisson30", f"CellProfiler ExampleHuman {what}, Poisson peak "
                    f"{POISSON_PEAK:g}", files)


def stardist(quick: bool) -> Dataset:  # noqa: ARG001 - one image in both suites
    """StarDist DSB2018 nuclei image with Poisson noise (peak 30)."""
    files = [data_root() / "stardist_nuclei_2d" / "img2d.tif"]
    return _poisson("stardist-poisson30", f"StarDist nuclei img2d, Poisson peak {POISSON_PEAK:g}",
                    files)


LOADERS = {"bsd68": bsd68, "fmd": fmd, "cellprofiler": cellprofiler, "stardist": stardist}


def load_all(quick: bool) -> list[Dataset]:
    """All quality data sets of a suite, in a fixed order."""
    return [load(quick) for load in LOADERS.values()]
