"""Tests of the blind-spot masks and pixel replacements (N2V, N2V2, structN2V)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from n2v_cascade.errors import InputError
from n2v_cascade.kernels import dilate, grid_hides_everything, line_kernel, validate_kernel
from n2v_cascade.masking import (
    apply_masking,
    grid_mask,
    hide_struct,
    random_mask,
    replace_median,
    replace_random_neighbour,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coded(batch: int, *spatial: int) -> torch.Tensor:
    """Float image whose value is the flat spatial index (so a value gives its coordinates)."""
    n = int(np.prod(spatial))
    return (
        torch.arange(n, dtype=torch.float32)
        .reshape(1, 1, *spatial)
        .repeat(batch, 1, *[1] * len(spatial))
    )


def decode(values: torch.Tensor, spatial: tuple[int, ...]) -> np.ndarray:
    """Coordinates (N, d) of the flat indices stored in ``values``."""
    return np.stack(np.unravel_index(values.long().numpy(), spatial), axis=1)


# --------------------------------------------------------------------------- random_mask


@pytest.mark.parametrize(
    ("shape", "fraction", "n"),
    [((4, 1, 32, 32), 0.01, 10), ((3, 2, 6, 10, 10), 0.02, 12), ((5, 1, 16, 16), 1e-6, 1)],
)
def test_random_mask_count(shape: tuple[int, ...], fraction: float, n: int) -> None:
    mask = random_mask(shape, fraction, gen())
    assert mask.dtype == torch.bool and mask.shape == (shape[0], 1, *shape[2:])
    assert mask.flatten(1).sum(1).tolist() == [n] * shape[0]


def test_random_mask_samples_differ_and_seed_reproducible() -> None:
    mask = random_mask((4, 1, 8, 16, 16), 0.01, gen(3))
    flat = mask.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i, j in itertools.combinations(range(4), 2))
    assert torch.equal(mask, random_mask((4, 1, 8, 16, 16), 0.01, gen(3)))
    assert not torch.equal(mask, random_mask((4, 1, 8, 16, 16), 0.01, gen(4)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), "a"])
def test_random_mask_rejects_bad_fraction(fraction: object) -> None:
    with pytest.raises(InputError, match="fraction"):
        random_mask((1, 1, 8, 8), fraction, gen())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- grid_mask


@pytest.mark.parametrize(("shape", "stride"), [((16, 1, 20, 24), 4), ((12, 2, 6, 9, 12), 3)])
def test_grid_mask_lattice(shape: tuple[int, ...], stride: int) -> None:
    mask = grid_mask(shape, stride, gen())
    spatial = shape[2:]
    assert mask.shape == (shape[0], 1, *spatial)
    phases = set()
    for sample in mask[:, 0]:
        coords = sample.nonzero()
        assert ((coords - coords[0]) % stride == 0).all()
        # every side is a multiple of stride here, so density is exactly 1 / stride^d
        assert len(coords) * stride ** len(spatial) == np.prod(spatial)
        phases.add(tuple(coords[0].tolist()))
    assert len(phases) > 1


def test_grid_mask_short_axis_still_masks_every_sample() -> None:
    mask = grid_mask((32, 1, 3, 16), 8, gen())
    assert (mask.flatten(1).sum(1) >= 1).all()
    with pytest.raises(InputError, match="stride"):
        grid_mask((1, 1, 8, 8), 1, gen())


# --------------------------------------------------------------------------- neighbour


def test_neighbour_offsets_uniform_and_never_zero() -> None:
    radius, size, batch = 2, 64, 16
    x = coded(batch, size, size)
    mask = torch.zeros(batch, 1, size, size, dtype=torch.bool)
    mask[..., radius:-radius, radius:-radius] = True  # interior: no reflections
    out = replace_random_neighbour(x, mask, radius, gen(1))
    where = mask[:, 0].nonzero()[:, 1:].numpy()
    offsets = decode(out[mask], (size, size)) - where
    assert len(offsets) == batch * (size - 2 * radius) ** 2  # 57600
    assert np.abs(offsets).max() <= radius and (np.abs(offsets).sum(1) > 0).all()
    counts = np.zeros((5, 5))
    np.add.at(counts, (offsets[:, 0] + radius, offsets[:, 1] + radius), 1)
    assert counts[radius, radius] == 0
    observed = np.delete(counts.ravel(), 12)
    expected = len(offsets) / 24
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 49.73  # chi-square critical value, 23 dof, p = 0.001


@pytest.mark.parametrize(("spatial", "radius"), [((6, 7), 2), ((4, 5), 2), ((4, 6, 5), 1)])
def test_neighbour_at_borders_never_copies_itself(spatial: tuple[int, ...], radius: int) -> None:
    x = coded(32, *spatial)
    mask = torch.ones(32, 1, *spatial, dtype=torch.bool)
    out = replace_random_neighbour(x, mask, radius, gen(2))
    assert (out != x).all()
    offsets = decode(out[mask], spatial) - mask[:, 0].nonzero()[:, 1:].numpy()
    assert np.abs(offsets).max() <= radius


def test_neighbour_keeps_unmasked_and_never_leaks() -> None:
    g = gen(5)
    x = torch.randperm(2 * 3 * 20 * 30, generator=g).float().reshape(2, 3, 20, 30)
    before = x.clone()
    mask = random_mask(x.shape, 0.05, g)
    out = replace_random_neighbour(x, mask, 2, g)
    assert torch.equal(x, before)  # works on a copy
    keep = ~mask.expand_as(x)
    assert torch.equal(out[keep], x[keep])
    changed = mask.expand_as(x)
    assert (out[changed] != x[changed]).all()
    assert torch.isin(out[changed], x).all()  # copies real pixel values


def test_neighbour_same_offset_for_all_channels_and_reproducible() -> None:
    x = coded(2, 16, 16).repeat(1, 2, 1, 1)
    x[:, 1] += 1000.0
    mask = random_mask(x.shape, 0.1, gen())
    out = replace_random_neighbour(x, mask, 1, gen(7))
    assert torch.equal(out[:, 1] - 1000.0, out[:, 0])
    assert torch.equal(out, replace_random_neighbour(x, mask, 1, gen(7)))


def test_neighbour_rejects_bad_radius_and_mask() -> None:
    x = torch.zeros(1, 1, 8, 8)
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    with pytest.raises(InputError, match="radius"):
        replace_random_neighbour(x, mask, 0, gen())
    with pytest.raises(InputError, match="radius"):
        replace_random_neighbour(x[..., :1, :], mask[..., :1, :], 1, gen())  # side 1
    with pytest.raises(InputError, match="mask"):
        replace_random_neighbour(x, mask.float(), 1, gen())


# --------------------------------------------------------------------------- median


def median_reference(x: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray:
    """Per-pixel numpy median of the reflect-padded neighbourhood without the centre."""
    out = x.copy()
    spatial = x.shape[2:]
    offsets = list(itertools.product(range(-radius, radius + 1), repeat=len(spatial)))
    for b, *centre in zip(*np.nonzero(mask[:, 0]), strict=True):
        values = []
        for offset in offsets:
            src = []
            for c, o, n in zip(centre, offset, spatial, strict=True):
                s = c + o
                s = -s if s < 0 else (2 * (n - 1) - s if s >= n else s)
                src.append(s)
            if tuple(src) != tuple(centre):  # the centre and its reflected copies
                values.append(x[(b, slice(None), *src)])
        out[(b, slice(None), *centre)] = np.median(np.stack(values), axis=0)
    return out


@pytest.mark.parametrize(("shape", "radius"), [((2, 2, 12, 13), 2), ((1, 1, 5, 6, 7), 1)])
def test_median_matches_numpy_reference(shape: tuple[int, ...], radius: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    mask = rng.random((shape[0], 1, *shape[2:])) < 0.3
    out = replace_median(torch.from_numpy(x), torch.from_numpy(mask), radius).numpy()
    np.testing.assert_allclose(out, median_reference(x, mask, radius), rtol=1e-6)


def test_median_interior_is_median_of_24_neighbours() -> None:
    x = np.random.default_rng(1).normal(size=(1, 1, 5, 5)).astype(np.float32)
    mask = np.zeros((1, 1, 5, 5), dtype=bool)
    mask[..., 2, 2] = True
    out = replace_median(torch.from_numpy(x), torch.from_numpy(mask), 2).numpy()
    assert out[0, 0, 2, 2] == pytest.approx(np.median(np.delete(x.ravel(), 12)))


def test_median_excludes_centre() -> None:
    x = torch.tensor([[0, 0, 0], [0, 10, 10], [10, 10, 10]], dtype=torch.float32)[None, None]
    mask = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    mask[..., 1, 1] = True
    # neighbours: four 0s and four 10s -> 5; with the centre (10) it would be 10
    assert replace_median(x, mask, 1)[0, 0, 1, 1] == 5.0
    # at row 1 with radius 2, reflect padding maps row -1 onto row 1 (the centre itself)
    x = coded(1, 6, 6)
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 1, 1] = True
    ref = median_reference(x.numpy(), mask.numpy(), 2)
    assert replace_median(x, mask, 2)[0, 0, 1, 1] == pytest.approx(ref[0, 0, 1, 1])


# --------------------------------------------------------------------------- structN2V


def test_line_kernel() -> None:
    assert line_kernel("horizontal:5").shape == (1, 5) and line_kernel("horizontal:5").all()
    assert line_kernel(" Vertical:3 ").shape == (3, 1)
    assert line_kernel("vertical:7").dtype == bool
    assert line_kernel("box:3").shape == (3, 3) and line_kernel("box:3").all()
    for bad in ["horizontal:4", "horizontal:1", "diagonal:5", "vertical", "vertical:x", "",
                "box:2", "auto"]:
        with pytest.raises(InputError, match="struct"):
            line_kernel(bad)


def test_validate_kernel() -> None:
    kernel = validate_kernel(np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]]), "mask.npy")
    assert kernel.dtype == bool and kernel[1, 1] and kernel.sum() == 3
    assert validate_kernel(np.zeros((1, 3, 3), dtype=bool), "k", ndim=3).shape == (1, 3, 3)
    bad = [np.ones((2, 3)), np.ones(5), np.ones((1, 1, 1, 1)), np.full((3, 3), 2), [[1, 1], [1]]]
    for kernel in bad:
        with pytest.raises(InputError, match="mask.npy"):
            validate_kernel(kernel, "mask.npy")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k"):
        validate_kernel(np.ones((3, 3, 3)), "k", ndim=2)
    with pytest.raises(InputError):
        hide_struct(
            torch.zeros(1, 1, 8, 8),
            torch.ones(1, 1, 8, 8, dtype=torch.bool),
            np.ones((3, 3, 3), dtype=bool),
            gen(),
        )


def dilation_reference(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Loop reference: positions p + (k - centre) for masked p and True kernel cells k."""
    spatial = mask.shape[2:]
    kernel = kernel.reshape((1,) * (len(spatial) - kernel.ndim) + kernel.shape)
    centre = np.array(kernel.shape) // 2
    out = np.zeros_like(mask)
    for b, *p in zip(*np.nonzero(mask[:, 0]), strict=True):
        for k in zip(*np.nonzero(kernel), strict=True):
            q = np.array(p) + np.array(k) - centre
            if (q >= 0).all() and (q < spatial).all():
                out[(b, 0, *q)] = True
    return out


ASYMMETRIC = np.array([[0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=bool)  # centre + up-right


@pytest.mark.parametrize(
    ("spatial", "kernel"),
    [
        ((20, 24), line_kernel("horizontal:5")),
        ((20, 24), line_kernel("vertical:7")),
        ((20, 24), line_kernel("box:3")),
        ((5, 12, 14), line_kernel("box:3")),
        ((20, 24), ASYMMETRIC),
        ((5, 12, 14), line_kernel("horizontal:3")),
        ((5, 12, 14), validate_kernel(np.ones((3, 1, 3)), "k")),
    ],
)
def test_hide_struct_hides_exactly_the_kernel(spatial: tuple[int, ...], kernel: np.ndarray) -> None:
    g = gen(11)
    n = int(np.prod(spatial))
    x = torch.randperm(2 * n, generator=g).float().reshape(2, 1, *spatial)
    mask = random_mask(x.shape, 0.02, g)
    mask[0, 0, (0,) * len(spatial)] = True  # a corner: the kernel is cut at the border
    out = hide_struct(x, mask, kernel, g)
    changed = (out != x).numpy()
    assert np.array_equal(changed, dilation_reference(mask.numpy(), kernel))
    hidden = torch.from_numpy(changed)
    assert not torch.isin(out[hidden], x[hidden]).any()  # no original value survives there
    lo, hi = x.flatten(1).amin(1), x.flatten(1).amax(1)
    for b in range(2):
        assert ((out[b][hidden[b]] >= lo[b]) & (out[b][hidden[b]] <= hi[b])).all()


def test_apply_masking_struct_on_top_of_replacement() -> None:
    g = gen(13)
    x = torch.randperm(3 * 16 * 16, generator=g).float().reshape(3, 1, 16, 16)
    mask = grid_mask(x.shape, 6, g)
    kernel = line_kernel("horizontal:3")
    out = apply_masking(x, mask, "median", 1, g, kernel=kernel)
    assert np.array_equal((out != x).numpy(), dilation_reference(mask.numpy(), kernel))
    zero = apply_masking(x + 5, mask, "zero", 1, g)
    assert (zero[mask] == 0).all() and torch.equal(zero[~mask], (x + 5)[~mask])
    with pytest.raises(InputError, match="replacement"):
        apply_masking(x, mask, "mean", 1, g)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "int32": np.int32, "float32": np.float32}


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    spatial=st.one_of(
        st.lists(st.integers(5, 24), min_size=2, max_size=2),
        st.lists(st.integers(5, 12), min_size=3, max_size=3),
    ),
    dtype=st.sampled_from(sorted(DTYPES)),
    pattern=st.sampled_from(["random", "grid"]),
    replacement=st.sampled_from(["neighbour", "median", "zero"]),
    radius=st.integers(1, 2),
    struct=st.sampled_from([None, "horizontal:3", "vertical:5"]),
    seed=st.integers(0, 2**16),
)
def test_masking_properties(
    batch: int,
    spatial: list[int],
    dtype: str,
    pattern: str,
    replacement: str,
    radius: int,
    struct: str | None,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    data = (rng.random((batch, 1, *spatial)) * 200).astype(DTYPES[dtype])
    x = torch.from_numpy(data)
    g = gen(seed)
    if pattern == "random":
        mask = random_mask(x.shape, 0.002, g)
    else:
        mask = grid_mask(x.shape, 4, g)
    kernel = None if struct is None else line_kernel(struct)
    out = apply_masking(x, mask, replacement, radius, g, kernel=kernel)  # type: ignore[arg-type]
    assert out.shape == x.shape and out.is_floating_point()
    assert (mask.flatten(1).sum(1) >= 1).all()
    touched = mask.numpy() if kernel is None else dilation_reference(mask.numpy(), kernel)
    keep = torch.from_numpy(~touched)
    assert torch.equal(out[keep], x.float()[keep])


@pytest.mark.parametrize("shape", [(2, 8, 8), (3, 8, 8), (2, 3, 9)])
def test_neighbour_on_axes_shorter_than_the_radius_never_copies_itself(shape) -> None:
    """A stack of 2-3 slices with radius 2: the replacement is another voxel, within r."""
    x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(1, 1, *shape)
    mask = torch.ones_like(x, dtype=torch.bool)
    out = replace_random_neighbour(x, mask, 2, gen(3))
    source = np.stack(np.unravel_index(out.flatten().long().numpy(), shape), axis=1)
    target = np.stack(np.unravel_index(np.arange(x.numel()), shape), axis=1)
    assert (source != target).any(axis=1).all()  # never its own value
    assert (np.abs(source - target) <= 2).all()  # a neighbour within the radius


@pytest.mark.parametrize("spec,stride", [("box:3", 4), ("box:5", 4), ("box:5", 6),
                                         ("box:3", 3), ("horizontal:5", 4), ("box:7", 4)])
def test_grid_hides_everything_matches_the_hidden_pixels(spec: str, stride: int) -> None:
    """The exact answer: dilate a real grid mask by the kernel and look (away from the
    borders, where lattice points outside the patch are missing)."""
    mask = grid_mask((3, 1, 24, 24), stride, torch.Generator().manual_seed(0))
    hidden = dilate(mask, line_kernel(spec))[..., 6:-6, 6:-6]
    assert grid_hides_everything(stride, line_kernel(spec), 2) is bool(hidden.all())
    # a YX kernel never hides whole 3-D stacks: the grid also skips planes along Z
    assert not grid_hides_everything(stride, line_kernel(spec), 3)
