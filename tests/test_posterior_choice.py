"""Choosing prior or posterior per image without ground truth (PG-URE), and its checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from n2v_cascade.errors import InputError
from n2v_cascade.posterior import (
    CHOICE_MARGIN,
    binned_residual_variance,
    choose_posterior,
    combine,
    posterior_gain,
    posterior_mean,
    posterior_weight,
)


def _scene(kind: str, seed: int = 0, size: int = 256, prior_error: float = 12.0):
    """Clean signal, noisy observation, a blind prior (never saw the pixel) and the noise.

    The prior is the signal plus an error independent of the observation, as a blind-spot
    network's estimate is; its predicted variance of the noisy value is noise + error.
    """
    rng = np.random.default_rng(seed)
    clean = 40 + 120 * gaussian_filter(rng.random((size, size)), 6)
    clean = (clean - clean.min()) / np.ptp(clean) * 150 + 20
    if kind == "gaussian":
        noise_var = np.full(clean.shape, 15.0 ** 2)
        noisy = clean + rng.normal(0, 15.0, clean.shape)
    else:  # Poisson-Gaussian: a * Poisson(s / a) + N(0, b)
        a, b = 4.0, 25.0
        noise_var = a * clean + b
        noisy = a * rng.poisson(clean / a) + rng.normal(0, np.sqrt(b), clean.shape)
    prior = clean + rng.normal(0, prior_error, clean.shape)
    predicted = noise_var + prior_error ** 2
    return clean, noisy, prior, predicted, noise_var


def _true_change(clean, noisy, prior, predicted, noise_var) -> float:
    post, _ = posterior_mean(prior, predicted, noisy, noise_var)
    return float(np.mean((post.astype(np.float64) - clean) ** 2)
                 - np.mean((prior - clean) ** 2))


@pytest.mark.parametrize("kind", ["gaussian", "poisson-gaussian"])
def test_the_estimated_change_in_mse_matches_the_true_one(kind: str) -> None:
    """PG-URE with the true noise variance at the observation is unbiased: over seeds its
    estimate of MSE(posterior) - MSE(prior) agrees with the truth within its error."""
    est, truth = [], []
    for seed in range(4):
        clean, noisy, prior, predicted, noise_var = _scene(kind, seed)
        at_obs = (noise_var if kind == "gaussian" else 4.0 * np.clip(noisy, 0, None) + 25.0)
        gain, error = posterior_gain(noisy, prior, posterior_weight(predicted, noise_var),
                                     at_obs)
        est.append(gain)
        truth.append(_true_change(clean, noisy, prior, predicted, noise_var))
        assert error > 0
        assert abs(gain - truth[-1]) < 4 * error + 1.0
    assert np.mean(truth) < -20  # the posterior really helps here...
    assert np.mean(est) == pytest.approx(np.mean(truth), rel=0.1)  # ...and the estimate says so


@pytest.mark.parametrize("kind", ["gaussian", "poisson-gaussian"])
def test_the_choice_follows_the_true_mse(kind: str) -> None:
    """A posterior built on the right noise is chosen; one built on a noise model 10x too
    small (it copies the noisy pixel) is refused, with the image's own noise as check."""
    clean, noisy, prior, predicted, noise_var = _scene(kind, 1)
    check = noise_var if kind == "gaussian" else 4.0 * np.clip(noisy, 0, None) + 25.0
    good = choose_posterior(noisy, prior, predicted, noise_var, check)
    assert good and _true_change(clean, noisy, prior, predicted, noise_var) < 0
    info: dict = {}
    bad = choose_posterior(noisy, prior, predicted, noise_var / 10, check, info)
    assert not bad and _true_change(clean, noisy, prior, predicted, noise_var / 10) > 0
    assert info["score_posterior"] > info["score_prior"] > 0


def _photon_starved(seed: int):
    """A scene of ~1 photon per pixel (gain 20 grey levels per photon, as FMD's FISH
    frames): a blind prior that is the clean value's conditional mean (the clean value
    scatters around it by 4), its predicted noisy variance, and the true noise model."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.random((256, 256)), 4)
    prior = 15.0 + 45.0 * ((base - base.min()) / np.ptp(base)) ** 2
    clean = np.clip(prior + rng.normal(0, 4.0, prior.shape), 0, None)
    noisy = 20.0 * rng.poisson(clean / 20.0)
    est = {"mean": prior[None].astype(np.float32),
           "var": (20.0 * prior + 16.0)[None].astype(np.float32)}
    return clean, noisy, est, {"kind": "poisson-gaussian", "a": 20.0, "b": 0.0}


@pytest.mark.parametrize("factor", [1.0, 0.7])
def test_photon_starved_noise_is_not_read_low(factor: float) -> None:
    """With a few photons per pixel the noise at the observed value jumps between 0 and
    many times its mean, and a cap per pixel trims it low; the reading at the prior mean
    does not, and the less favourable reading decides, so the estimated change follows
    the true one (a posterior built on 0.7x the noise hurts and is refused)."""
    for seed in range(2):
        clean, noisy, est, noise = _photon_starved(seed)
        used = {**noise, "a": factor * noise["a"]}
        info: dict = {}
        chosen, _ = combine(noisy[None], est, blind=True, blind_radius=0, posterior="auto",
                            noise=used, check_noise=noise, info=info)
        post, _ = combine(noisy[None], est, blind=True, blind_radius=0, posterior=True,
                          noise=used)
        true = float(np.mean((post[0].astype(np.float64) - clean) ** 2)
                     - np.mean((est["mean"][0].astype(np.float64) - clean) ** 2))
        estimate = info["score_posterior"] - info["score_prior"]
        assert abs(estimate - true) < 4 * info["score_error"] + 0.5
        if factor < 1:
            assert true > 20 and info["posterior"] is False
            assert np.array_equal(chosen, est["mean"])


def test_a_gain_within_its_error_keeps_the_prior() -> None:
    """A posterior whose estimated gain is below CHOICE_MARGIN standard errors (a tiny
    prior error: the posterior barely moves) is not chosen; a clear gain is."""
    decisions = []
    for prior_error in (1.0, 4.0):
        _, noisy, prior, predicted, noise_var = _scene("gaussian", 0, 128, prior_error)
        info: dict = {}
        decisions.append(choose_posterior(noisy, prior, predicted, noise_var, noise_var,
                                          info))
        gain = info["score_posterior"] - info["score_prior"]
        assert gain < 0
        assert decisions[-1] is (gain + CHOICE_MARGIN * info["score_error"] < 0)
    assert decisions == [False, True]


def test_the_least_favourable_noise_reading_decides() -> None:
    _, noisy, prior, predicted, noise_var = _scene("gaussian", 5)
    alone: dict = {}
    both: dict = {}
    choose_posterior(noisy, prior, predicted, noise_var, noise_var, alone)
    choose_posterior(noisy, prior, predicted, noise_var, [noise_var / 4, noise_var], both)
    assert both == alone  # the larger noise reading (less gain) is the one reported


def test_a_too_small_check_noise_is_capped_by_the_residual() -> None:
    """The cap: no noise variance is larger than E[(x - mu)^2 | mu]."""
    _, noisy, prior, _, noise_var = _scene("gaussian", 2)
    cap = binned_residual_variance(noisy, prior)
    assert cap.shape == noisy.shape
    # residual variance = noise 225 + prior error 144, at every brightness
    assert np.median(cap) == pytest.approx(225 + 144, rel=0.1)
    assert np.all(cap >= 0)


def test_combine_auto_returns_exactly_prior_or_posterior() -> None:
    clean, noisy, prior, predicted, noise_var = _scene("gaussian", 3)
    est = {"mean": prior[None].astype(np.float32), "var": predicted[None].astype(np.float32)}
    noise = {"kind": "gaussian", "sigma": 15.0}
    outputs = {}
    for choice in (True, False, "auto"):
        info: dict = {}
        mean, _ = combine(noisy[None], est, blind=True, blind_radius=0, posterior=choice,
                          noise=noise, info=info)
        outputs[choice] = mean
        margin = CHOICE_MARGIN * info.get("score_error", 0.0)
        assert info["posterior"] is (choice is True or (choice == "auto"
                                                         and info["score_posterior"] + margin
                                                         < info["score_prior"]))
    chosen = True if np.array_equal(outputs["auto"], outputs[True]) else False
    assert np.array_equal(outputs["auto"], outputs[chosen])
    assert chosen  # the right noise model: the posterior helps and is chosen


def test_auto_never_chooses_the_posterior_of_a_network_that_saw_the_pixel() -> None:
    _, noisy, prior, predicted, _ = _scene("gaussian", 4)
    est = {"mean": prior[None].astype(np.float32), "var": predicted[None].astype(np.float32)}
    info: dict = {}
    mean, _ = combine(noisy[None], est, blind=False, blind_radius=0, posterior="auto",
                      noise={"kind": "gaussian", "sigma": 15.0}, info=info)
    assert info["posterior"] is False and np.array_equal(mean, est["mean"])


def test_a_bad_posterior_choice_is_refused() -> None:
    est = {"mean": np.zeros((1, 8, 8), np.float32), "var": np.ones((1, 8, 8), np.float32)}
    with pytest.raises(InputError, match="posterior"):
        combine(np.zeros((1, 8, 8)), est, blind=True, blind_radius=0, posterior="yes",
                noise=None)


def test_cli_denoise_chooses_per_image_and_the_flags_force_a_side(tmp_path, noisy_pair,
                                                                  capsys) -> None:
    import tifffile

    from conftest import run_cli, tiny_config
    from n2v_cascade.model import Model
    from n2v_cascade.training import train

    _, noisy = noisy_pair
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    cfg = tiny_config(variant="probabilistic-blindspot", network={"depth": 2, "width": 8,
                                                                  "blind_radius": 0})
    train(noisy, cfg, output_dir=tmp_path / "m", progress=False)
    model = Model.load(tmp_path / "m")
    outputs = {}
    for flag in ("", "--posterior", "--prior"):
        out = tmp_path / f"out{flag}.tif"
        code, out_text, err = run_cli(["denoise", str(tmp_path / "noisy.tif"), "-m",
                                       str(tmp_path / "m"), "-o", str(out),
                                       *([flag] if flag else [])], capsys)
        assert code == 0, err
        outputs[flag] = tifffile.imread(out)
        if not flag:  # the default says what it chose, with both scores
            assert "ground-truth-free score: prior" in out_text + err
    np.testing.assert_array_equal(outputs["--prior"], model.denoise(noisy, posterior=False))
    np.testing.assert_array_equal(outputs["--posterior"], model.denoise(noisy, posterior=True))
    info: list = []
    chosen = model.denoise(noisy, info=info)
    np.testing.assert_array_equal(outputs[""], chosen)
    side = "--posterior" if info[0]["posterior"] else "--prior"
    np.testing.assert_array_equal(outputs[""], outputs[side])


def test_the_choice_is_checked_against_the_residual_noise(noisy_pair, monkeypatch) -> None:
    # the check's noise comes from the image's residual (n2v_cascade.blend): this tiny
    # model keeps its prior with the real reading, and a reading of almost no noise
    # makes the posterior, which moves towards the observation, look better
    import n2v_cascade.model as model_mod
    from conftest import tiny_config
    from n2v_cascade.posterior import residual_noise
    from n2v_cascade.training import train

    _, noisy = noisy_pair
    cfg = tiny_config(variant="probabilistic-blindspot", network={"depth": 2, "width": 8,
                                                                  "blind_radius": 0})
    model = train(noisy, cfg, progress=False)
    seen: list = []

    def quiet(samples, prior_mean):
        seen.append(residual_noise(samples, prior_mean))
        return {"kind": "gaussian", "sigma": 1e-4}

    info: list = []
    model.denoise(noisy, info=info)
    assert info[0]["posterior"] is False
    monkeypatch.setattr(model_mod, "residual_noise", quiet)
    out = model.denoise(noisy, info=(info := []))
    assert seen and seen[0]["kind"] == "poisson-gaussian" and seen[0]["b"] >= 0
    assert info[0]["posterior"] is True
    np.testing.assert_array_equal(out, model.denoise(noisy, posterior=True))
    monkeypatch.setattr(model_mod, "residual_noise", lambda s, m: None)  # too small: image
    assert len(model.denoise(noisy, info=(fallback := []))) and "score_prior" in fallback[0]
