"""3-D data through the whole pipeline: axes, patches, augmentation, training, prediction.

Tiny volumes and networks (width 4, depth 2); the 3-D networks' own properties (the
blind spot) are tested in test_models_3d.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from n2v_cascade.augment import inverse, n_transforms, random_transforms, transform
from n2v_cascade.axes import choose_dims, from_samples, layout, to_samples
from n2v_cascade.data import PatchSampler, default_steps_per_epoch, split_train_val
from n2v_cascade.errors import InputError
from n2v_cascade.model import Model, tile_shape
from n2v_cascade.training import train

NET = {"depth": 2, "width": 4}


def _volume(shape=(10, 24, 24), seed=0) -> np.ndarray:
    """A smooth volume with Gaussian noise: something to learn in a few steps."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    clean = np.sin(3 * x + 2 * y) + np.cos(4 * z)
    return (clean + rng.normal(0, 0.3, shape)).astype(np.float32)


def _config(variant: str = "n2v", **extra):
    values = dict(variant=variant, dims=3, patch_size=8, patch_z=4, batch_size=2, epochs=1,
                  steps_per_epoch=2, network=NET, mask={"fraction": 0.05})
    values.update(extra)
    return tiny_config(**values)


# --- axes ------------------------------------------------------------------------


def test_a_3d_network_convolves_z_or_time_and_treats_the_rest_as_samples() -> None:
    assert layout((5, 8, 9), "ZYX", dims=3).spatial == "ZYX"
    assert layout((5, 8, 9), None, dims=3).axes == "ZYX"  # the 3-D default
    assert layout((2, 5, 8, 9), None, dims=3).sample_axes == "S"
    movie = layout((4, 5, 8, 9), "TZYX", dims=3)
    assert (movie.spatial, movie.sample_axes, movie.n_samples) == ("ZYX", "T", 4)
    lapse = layout((6, 8, 9), "TYX", dims=3)  # no Z: time is the third dimension
    assert (lapse.spatial, lapse.n_samples) == ("TYX", 1)
    stack = np.arange(4 * 3 * 5 * 6, dtype=np.float32).reshape(4, 3, 5, 6)
    lay = layout(stack.shape, "ZCYX", dims=3)
    samples = to_samples(stack, lay)
    assert samples.shape == (3, 4, 5, 6)
    np.testing.assert_array_equal(samples[1], stack[:, 1])
    np.testing.assert_array_equal(from_samples(samples, lay), stack)


def test_3d_layout_refuses_data_without_depth_or_with_one_slice() -> None:
    with pytest.raises(InputError, match="needs axes ZYX.*--dims 2"):
        layout((3, 8, 9), "CYX", dims=3)
    with pytest.raises(InputError, match="1 slice along Z"):
        layout((1, 8, 9), "ZYX", dims=3)


def test_auto_dims_is_3d_only_with_a_deep_enough_z_axis() -> None:
    assert choose_dims("auto", (8, 20, 20), "ZYX") == 3
    assert choose_dims("auto", (7, 20, 20), "ZYX") == 2
    assert choose_dims("auto", (30, 20, 20), None) == 2  # SYX without metadata
    assert choose_dims("auto", (30, 20, 20), "TYX") == 2
    assert choose_dims(3, (30, 20, 20), "TYX") == 3


# --- patches and augmentation ----------------------------------------------------


def test_3d_patches_are_real_sub_volumes() -> None:
    vol = np.arange(6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)
    sampler = PatchSampler([vol], (4, 5, 5), augment=False)
    batch = sampler.sample(16, torch.Generator().manual_seed(0))
    assert batch.shape == (16, 1, 4, 5, 5)
    for patch in batch[:, 0].numpy():
        z, y, x = (int(v) for v in np.unravel_index(int(patch[0, 0, 0]), vol.shape))
        np.testing.assert_array_equal(patch, vol[z:z + 4, y:y + 5, x:x + 5])


def test_multichannel_patches_keep_the_channels_of_one_position() -> None:
    two = np.stack([np.arange(100.0).reshape(10, 10), -np.arange(100.0).reshape(10, 10)])
    batch = PatchSampler([two.astype(np.float32)], 4, augment=False).sample(
        8, torch.Generator().manual_seed(1))
    assert batch.shape == (8, 2, 4, 4)
    np.testing.assert_array_equal(batch[:, 1], -batch[:, 0])


def test_3d_transforms_turn_only_the_yx_plane_and_invert() -> None:
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(1, 2, 3, 4, 4)
    assert n_transforms(3) == 16 and n_transforms(2) == 8
    seen = set()
    for t in range(16):
        y = transform(x, t)
        assert y.shape == x.shape
        torch.testing.assert_close(inverse(y, t), x)
        seen.add(y.numpy().tobytes())
        # each Z plane maps to a Z plane: the set of values per plane is kept or mirrored
        planes = {frozenset(p.flatten().tolist()) for p in y[0, 0]}
        assert planes == {frozenset(p.flatten().tolist()) for p in x[0, 0]}
    assert len(seen) == 16  # all different
    batch = random_transforms(x.expand(64, 2, 3, 4, 4).clone(), torch.Generator().manual_seed(0))
    assert len({b.numpy().tobytes() for b in batch}) == 16


def test_3d_split_holds_out_a_strip_and_cuts_3d_validation_patches() -> None:
    vol = np.zeros((8, 40, 16), np.float32)
    split = split_train_val([vol], (4, 8, 8), 0.2, ["v"], divisor=4)
    assert split.train[0].shape == (8, 32, 16)
    assert split.val and all(p.shape == (4, 8, 8) for p in split.val)
    with pytest.raises(InputError, match="3x40x16 is smaller than the patch size 4x8x8"):
        split_train_val([vol[:3]], (4, 8, 8), 0.2, ["v"])
    assert default_steps_per_epoch(8 * 40 * 16, (4, 8, 8), 2, cap=None) == 80


# --- training and prediction -------------------------------------------------------


@pytest.mark.parametrize("variant", ["n2v", "n2v2", "structured", "probabilistic",
                                     "neighbor2neighbor", "recorrupted", "blindspot",
                                     "probabilistic-blindspot"])
def test_every_method_trains_in_3d_and_reloads_identically(
        variant, tmp_path) -> None:
    vol = _volume()
    model = train(vol, _config(variant), axes="ZYX", output_dir=tmp_path / "m",
                  progress=False)
    assert model.config.dims == 3
    assert any(p.ndim == 5 for p in model.network.parameters())  # Conv3d weights
    before = model.denoise(vol, axes="ZYX", tile=None)
    assert before.shape == vol.shape and np.isfinite(before).all()
    again = Model.load(tmp_path / "m").denoise(vol, axes="ZYX", tile=None)
    np.testing.assert_array_equal(again, before)


def test_structn2v_line_masks_work_along_z() -> None:
    from n2v_cascade.methods import get_method

    cfg = _config(mask={"struct": "depth:3", "fraction": 0.05})
    method = get_method(cfg)
    assert method.kernel.shape == (3, 1, 1)
    patches = torch.arange(2 * 6 * 8 * 8, dtype=torch.float32).reshape(2, 1, 6, 8, 8)
    inputs, _, mask = method.training_batch(patches, torch.Generator().manual_seed(0))
    changed = inputs != patches
    b, _, z, y, x = mask.nonzero(as_tuple=True)
    for dz in (-1, 1):  # the slices above and below each masked voxel are hidden too
        inside = (z + dz >= 0) & (z + dz < 6)
        assert changed[b[inside], 0, z[inside] + dz, y[inside], x[inside]].all()
    assert train(_volume(), cfg, axes="ZYX", progress=False).config.mask.struct == "depth:3"
    with pytest.raises(InputError, match="3-D kernel needs 3-D data"):
        tiny_config(mask={"struct": "depth:3"})


def test_tiled_3d_prediction_equals_whole_volume_prediction() -> None:
    vol = _volume((60, 64, 62))
    model = train(vol, _config(network={"depth": 1, "width": 4}), axes="ZYX", progress=False)
    radius = model.receptive_radius()
    tile = tile_shape(8, 3, radius, 2)
    assert all(t < n for t, n in zip(tile, vol.shape, strict=True))  # tiled along Z, Y, X
    whole = model.denoise(vol, axes="ZYX", tile=None)
    tiled = model.denoise(vol, axes="ZYX", tile=8)
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_default_3d_tiles_hold_a_bounded_number_of_voxels() -> None:
    from n2v_cascade.model import TILE_VOXELS_3D

    # a deep, wide stack: Z whole, YX shrunk to the 4x-overlap floor
    assert tile_shape(512, 3, 36, 4, (128, 2048, 2048)) == (128, 144, 144)
    # a thin stack: the YX sides shrink only as far as the budget needs
    thin = tile_shape(512, 3, 8, 4, (32, 2048, 2048))
    assert math.prod(thin) <= TILE_VOXELS_3D and thin[0] == 32 and thin[1] > 4 * 8
    # a network with six views gets a sixth of the voxels; small images stay whole
    assert math.prod(tile_shape(512, 3, 8, 4, (32, 2048, 2048), cost=6)) <= TILE_VOXELS_3D // 6
    assert tile_shape(512, 3, 8, 4, (20, 40, 44)) == (20, 40, 44)
    assert tile_shape(512, 2, 8, 4, (2048, 2048)) == (512, 512)  # 2-D: as requested


def test_few_slices_shrink_the_patch_depth_instead_of_failing() -> None:
    vol = _volume((3, 24, 24))
    model = train(vol, _config(patch_z=16), axes="ZYX", progress=False)
    assert model.denoise(vol, axes="ZYX").shape == vol.shape


def test_time_lapse_without_z_trains_over_tyx_and_tzyx_over_zyx() -> None:
    movie = np.stack([_volume((5, 16, 16), seed=s) for s in range(3)])  # TZYX
    model = train(movie, _config(), axes="TZYX", progress=False)
    assert model.denoise(movie, axes="TZYX").shape == movie.shape
    lapse = _volume((6, 16, 16))
    model = train(lapse, _config(), axes="TYX", progress=False)
    assert model.denoise(lapse, axes="TYX").shape == lapse.shape


def test_auto_dims_resolves_from_the_data_and_is_saved() -> None:
    model = train(_volume((8, 16, 16)), _config(dims="auto"), axes="ZYX", progress=False)
    assert model.config.dims == 3
    flat = train(_volume((8, 16, 16)), _config(dims="auto", patch_z=4), axes="SYX",
                 progress=False)
    assert flat.config.dims == 2


def test_3d_tta_averages_sixteen_orientations() -> None:
    vol = _volume((4, 16, 16))
    model = train(vol, _config(), axes="ZYX", progress=False)
    plain = model.denoise(vol, axes="ZYX")
    tta = model.denoise(vol, axes="ZYX", tta=True)
    assert tta.shape == vol.shape and not np.allclose(tta, plain)


def test_3d_probabilistic_model_gives_posterior_and_uncertainty() -> None:
    vol = _volume((6, 16, 16))
    model = train(vol, _config("probabilistic"), axes="ZYX", progress=False)
    with pytest.warns(UserWarning, match="counted twice"):
        mean, std = model.denoise(vol, axes="ZYX", posterior=True, return_std=True)
    assert mean.shape == std.shape == vol.shape and (std > 0).all()


def test_3d_blind_spot_posterior_is_chosen_per_volume_without_ground_truth() -> None:
    vols = np.stack([_volume((6, 16, 16), seed=s) for s in range(2)])
    model = train(vols, _config("probabilistic-blindspot"), axes="SZYX", progress=False)
    assert model.config.network.blind_radius == 0  # auto, from the YX planes
    info: list = []
    mean = model.denoise(vols, axes="SZYX", info=info)
    assert mean.shape == vols.shape
    assert len(info) == 2 and all("score_prior" in r and "score_posterior" in r for r in info)


# --- channels ----------------------------------------------------------------------


def test_joint_channels_are_the_networks_channels_and_reload_identically(tmp_path) -> None:
    two = np.stack([_volume((6, 16, 16), seed=0), 3 * _volume((6, 16, 16), seed=1)])
    model = train(two, _config(channels="joint"), axes="CZYX", output_dir=tmp_path / "m",
                  progress=False)
    assert model.config.n_channels == 2
    first = next(model.network.parameters())
    assert first.shape[1] == 2  # both channels go into the first convolution
    out = model.denoise(two, axes="CZYX")
    assert out.shape == two.shape
    np.testing.assert_array_equal(Model.load(tmp_path / "m").denoise(two, axes="CZYX"), out)
    with pytest.raises(InputError, match="--channels independent"):
        train(two, _config("probabilistic", channels="joint"), axes="CZYX",
              progress=False).denoise(two, axes="CZYX", return_std=True)


def test_joint_loss_scores_every_channel() -> None:
    from n2v_cascade.methods import get_method

    method = get_method(_config(channels="joint", n_channels=2))
    target = torch.zeros(1, 2, 4, 4)
    output = torch.zeros(1, 2, 4, 4)
    output[:, 1] = 1.0  # wrong in the second channel only
    assert float(method.loss(output, target, None)) == pytest.approx(0.5)


def test_independent_channels_are_samples_and_joint_needs_equal_channel_counts() -> None:
    two = np.stack([_volume((6, 16, 16), seed=0), _volume((6, 16, 16), seed=1)])
    model = train(two, _config(), axes="CZYX", progress=False)
    assert model.config.n_channels == 1
    assert model.denoise(two, axes="CZYX").shape == two.shape
    with pytest.raises(InputError, match="different channel counts"):
        train([two, two[:1]], _config(channels="joint"), axes="CZYX", progress=False)
    with pytest.raises(InputError, match="n_channels"):
        tiny_config(n_channels=2)


def test_3d_blind_spot_posterior_on_volumes_large_enough_for_the_correlation_check() -> None:
    # volumes of at least 32 voxels on every side reach the noise-correlation check of
    # the posterior, which measures the YX planes (it refused a 3-D array before)
    vol = _volume((32, 32, 32))
    model = train(vol, _config("probabilistic-blindspot"), axes="ZYX", progress=False)
    info: list = []
    auto = model.denoise(vol, axes="ZYX", info=info)
    forced = model.denoise(vol, axes="ZYX", posterior=True, noise_model="image")
    assert auto.shape == forced.shape == vol.shape and len(info) == 1
    assert np.isfinite(auto).all() and np.isfinite(forced).all()
