"""Patch sampling, augmentation and the train/validation split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from n2v_cascade.augment import inverse, random_transforms, transform
from n2v_cascade.data import PatchSampler, default_steps_per_epoch, split_train_val
from n2v_cascade.errors import InputError


def _coords(h: int, w: int) -> np.ndarray:
    return np.arange(h * w, dtype=np.float32).reshape(h, w)


def test_patches_are_real_crops_of_the_images() -> None:
    images = [_coords(40, 50), _coords(30, 30) + 10_000]
    sampler = PatchSampler(images, 16, augment=False)
    batch = sampler.sample(64, torch.Generator().manual_seed(1))
    assert batch.shape == (64, 1, 16, 16)
    for patch in batch[:, 0].numpy():
        src = images[0] if patch[0, 0] < 10_000 else images[1]
        y, x = np.argwhere(src == patch[0, 0])[0]
        np.testing.assert_array_equal(src[y:y + 16, x:x + 16], patch)
    seen = {int(p[0, 0, 0] >= 10_000) for p in batch}
    assert seen == {0, 1}


def test_sampling_is_reproducible() -> None:
    sampler = PatchSampler([_coords(40, 40)], 8)
    a = sampler.sample(8, torch.Generator().manual_seed(3))
    b = sampler.sample(8, torch.Generator().manual_seed(3))
    c = sampler.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augmentation_uses_all_eight_transforms() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    outs = {tuple(transform(x, t).flatten().tolist()) for t in range(8)}
    assert len(outs) == 8
    for t in range(8):
        assert torch.equal(inverse(transform(x, t), t), x)
    batch = x.repeat(200, 1, 1, 1)
    aug = random_transforms(batch, torch.Generator().manual_seed(0))
    assert {tuple(a.flatten().tolist()) for a in aug} == outs


def test_split_holds_out_bottom_strip() -> None:
    img = _coords(100, 64)
    split = split_train_val([img], 16, 0.2, ["a.tif"], divisor=4)
    assert split.train[0].shape == (80, 64)
    assert split.val and all(v.shape == (16, 16) for v in split.val)
    assert min(v.min() for v in split.val) >= img[80:].min()


def test_split_skips_strip_when_too_small_and_refuses_tiny_images() -> None:
    with pytest.warns(UserWarning, match="validation"):
        split = split_train_val([_coords(20, 20)], 16, 0.1, ["a"], divisor=4)
    assert split.train[0].shape == (20, 20) and not split.val
    with pytest.raises(InputError, match="small.tif: image 10x40 is smaller than the patch size"):
        split_train_val([_coords(10, 40)], 16, 0.1, ["small.tif"])


def test_default_epoch_sees_each_pixel_about_eight_times() -> None:
    assert default_steps_per_epoch(128 * 128 * 10, 128, 8) == 10
    assert default_steps_per_epoch(10, 128, 8) == 1


def test_default_epochs_are_capped_so_large_data_still_finish() -> None:
    from n2v_cascade.data import MAX_DEFAULT_STEPS

    # a 1024x1024 frame in 64x64 patches is 256 steps of 8 patches: capped
    assert default_steps_per_epoch(1024 * 1024, 64, 8) == MAX_DEFAULT_STEPS
    assert default_steps_per_epoch(1024 * 1024, 64, 8, cap=None) == 256
    assert default_steps_per_epoch(256 * 256, 64, 8) == 16  # small data: one pass
