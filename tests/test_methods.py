"""Built-in methods: masking and loss contracts, probabilistic NLL, posterior, save-load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from n2v_cascade.config import make_config
from n2v_cascade.errors import InputError
from n2v_cascade.methods import REGISTRY, get_method, method_class
from n2v_cascade.methods.probabilistic import Probabilistic
from n2v_cascade.model import Model
from n2v_cascade.normalize import Normalizer
from n2v_cascade.posterior import posterior_mean
from n2v_cascade.training import train

VARIANT_CONFIGS = {
    "n2v": {},
    "n2v2": {},
    "structured": {},
    "structured-line": {"variant": "structured", "mask": {"struct": "horizontal:3"}},
    "blindspot": {},
    "probabilistic": {},
    "probabilistic-blindspot": {"variant": "probabilistic", "backbone": "blindspot"},
}


def _config(key: str, **kw):
    values = {"variant": key, **VARIANT_CONFIGS[key]}
    values.update(kw)
    if "mask" not in values:
        values["mask"] = {"fraction": 0.05}
    return tiny_config(**values)


def test_registry_has_every_builtin_method_in_listing_order() -> None:
    assert list(REGISTRY) == ["n2v", "n2v2", "structured", "blindspot", "probabilistic",
                              "probabilistic-blindspot", "neighbor2neighbor", "recorrupted",
                              "renoise"]
    for cls in REGISTRY.values():
        assert cls.label and cls.short_label and cls.summary and cls.citation, cls.name


def test_older_spelling_selects_the_blindspot_probabilistic_method() -> None:
    cfg = make_config(variant="probabilistic", backbone="blindspot")
    assert cfg.variant == "probabilistic-blindspot"
    assert method_class("probabilistic", "blindspot") is REGISTRY["probabilistic-blindspot"]
    assert method_class("probabilistic", "unet") is REGISTRY["probabilistic"]
    with pytest.raises(ValueError, match="not available for method 'n2v'"):
        method_class("n2v", "blindspot")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        method_class("nope")


@pytest.mark.parametrize("key", list(VARIANT_CONFIGS))
def test_variant_trains_saves_reloads_and_predicts_identically(key, noisy_pair,
                                                               tmp_path) -> None:
    _, noisy = noisy_pair
    cfg = _config(key, epochs=4, steps_per_epoch=8, learning_rate=3e-3, batch_size=8,
                  val_fraction=0.25)
    model = train(noisy, cfg, output_dir=tmp_path / key, progress=False)
    losses = [h["val_loss"] for h in model.history]  # fixed validation masks: low variance
    assert losses[-1] < losses[0], losses
    loaded = Model.load(tmp_path / key)
    np.testing.assert_array_equal(loaded.denoise(noisy), model.denoise(noisy))
    if get_method(cfg).predicts_variance:
        mean, std = loaded.denoise(noisy, return_std=True)
        assert std.shape == noisy.shape and np.all(std >= 0) and np.all(np.isfinite(std))
        if get_method(cfg).blind:
            post, post_std = loaded.denoise(noisy, posterior=True, return_std=True)
        else:
            with pytest.warns(UserWarning, match="counted twice"):
                post, post_std = loaded.denoise(noisy, posterior=True, return_std=True)
        assert post.shape == noisy.shape and np.all(post_std > 0)
        assert loaded.noise["sigma"] > 0


def test_masked_variants_score_only_masked_pixels() -> None:
    x = torch.randn(2, 1, 16, 16)
    gen = torch.Generator().manual_seed(0)
    for key in ("n2v", "n2v2", "structured"):
        variant = get_method(_config(key))
        inputs, target, mask = variant.training_batch(x, gen)
        assert mask is not None and mask.any()
        assert torch.equal(inputs[~mask], x[~mask])  # only masked pixels are replaced
        assert not torch.equal(inputs[mask], x[mask])
        out = target.clone()
        out[mask] += 1.0  # errors only at masked pixels count
        assert variant.loss(out, target, mask).item() == pytest.approx(1.0)
    bs = get_method(_config("blindspot"))
    inputs, target, mask = bs.training_batch(x, gen)
    assert mask is None and torch.equal(inputs, x)


def test_structured_uses_grid_lattice() -> None:
    variant = get_method(_config("structured", mask={"stride": 4}))
    mask = variant.make_mask(torch.Size([3, 1, 16, 16]), torch.Generator().manual_seed(0))
    assert int(mask.sum()) == 3 * 16
    for m in mask[:, 0]:
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert len(set((ys % 4).tolist())) == 1 and len(set((xs % 4).tolist())) == 1


def test_nll_is_minimised_by_true_mean_and_variance() -> None:
    variant = Probabilistic(_config("probabilistic", nll_beta=0.0))  # plain Gaussian NLL
    gen = torch.Generator().manual_seed(0)
    target = 0.3 + 0.5 * torch.randn(1, 1, 128, 128, generator=gen)

    def nll(mu: float, var: float) -> float:
        out = torch.stack([torch.full_like(target[:, 0], mu),
                           torch.full_like(target[:, 0], np.log(var))], 1)
        return float(variant.loss(out, target, None))

    best = nll(0.3, 0.25)
    for mu, var in [(0.2, 0.25), (0.4, 0.25), (0.3, 0.15), (0.3, 0.4)]:
        assert nll(mu, var) > best
    mus = np.linspace(0.0, 0.6, 61)
    vars_ = np.linspace(0.1, 0.5, 81)
    grid = np.array([[nll(m, v) for v in vars_] for m in mus[::6]])
    i, j = np.unravel_index(grid.argmin(), grid.shape)
    assert abs(mus[::6][i] - float(target.mean())) < 0.07
    assert abs(vars_[j] - float(target.var())) < 0.02


@pytest.mark.parametrize("loss", [{"nll_beta": 0.0}, {"nll_beta": 0.5}, {"nll_beta": 1.0},
                                  {"mean_loss": "mse"}])
def test_nll_training_converges_to_true_mean_and_variance(loss: dict) -> None:
    # beta-NLL reweights pixels and the decoupled loss splits the gradients, but both keep
    # the minimiser: gradient descent on a constant prediction must land on the sample
    # mean and variance for every setting.
    variant = Probabilistic(_config("probabilistic", **loss))
    gen = torch.Generator().manual_seed(1)
    target = 0.3 + 0.5 * torch.randn(1, 1, 64, 64, generator=gen)
    params = torch.tensor([-1.0, 1.5], requires_grad=True)  # mean, log-variance: far off
    opt = torch.optim.Adam([params], lr=0.05)
    for _ in range(600):
        out = params.view(1, 2, 1, 1).expand(1, 2, 64, 64)
        opt.zero_grad()
        variant.loss(out, target, None).backward()
        opt.step()
    assert float(params[0].detach()) == pytest.approx(float(target.mean()), abs=0.01)
    assert float(params[1].detach().exp()) == pytest.approx(float(target.var()), rel=0.03)


def test_nll_beta_keeps_the_mean_gradient_of_high_variance_pixels() -> None:
    # plain NLL scales the mean's gradient by 1/var, so a pixel predicted with a large
    # variance stops pulling on the mean; beta = 1 gives it the MSE gradient back
    target = torch.zeros(1, 1, 1, 2)
    out = torch.tensor([[[[1.0, 1.0]], [[0.0, 4.0]]]], requires_grad=True)  # logvar 0 and 4
    grads = {}
    for beta in (0.0, 1.0):
        out.grad = None
        Probabilistic(_config("probabilistic", nll_beta=beta)).loss(out, target, None).backward()
        grads[beta] = out.grad[0, 0, 0].clone()
    assert float(grads[0.0][1] / grads[0.0][0]) == pytest.approx(np.exp(-4.0), rel=1e-4)
    assert float(grads[1.0][1] / grads[1.0][0]) == pytest.approx(1.0, rel=1e-4)


def test_decoupled_loss_gives_mse_gradient_to_mean_and_nll_gradient_to_variance() -> None:
    target = torch.tensor([[[[0.5, -1.0, 2.0]]]])
    raw = torch.tensor([[[[1.0, 1.0, -0.5]], [[0.0, 4.0, -2.0]]]])
    grads = {}
    for name, values in (("mse", {"mean_loss": "mse"}), ("nll", {"nll_beta": 0.0})):
        out = raw.clone().requires_grad_(True)
        Probabilistic(_config("probabilistic", **values)).loss(out, target, None).backward()
        grads[name] = out.grad[0, :, 0].clone()
    n = target.numel()
    mean, logvar = raw[0, 0, 0], raw[0, 1, 0]
    torch.testing.assert_close(grads["mse"][0], (mean - target[0, 0, 0]) / n)  # MSE, no 1/var
    torch.testing.assert_close(grads["mse"][1], grads["nll"][1])  # variance: plain NLL
    assert not torch.allclose(grads["nll"][0], grads["mse"][0])
    assert torch.allclose(grads["nll"][0], grads["mse"][0] * torch.exp(-logvar))
    with pytest.raises(InputError, match="nll_beta: applies to mean_loss 'nll' only"):
        make_config(variant="probabilistic", mean_loss="mse", nll_beta=0.5)


def test_posterior_mean_closed_form() -> None:
    # prior N(mu, p2) with p2 = s2 - n2; Gaussian likelihood -> precision-weighted average
    mu, s2, n2, y = np.float64(2.0), np.float64(5.0), np.float64(1.0), np.float64(7.0)
    mean, std = posterior_mean(np.array(mu), np.array(s2), np.array(y), np.array(n2))
    p2 = s2 - n2
    assert float(mean) == pytest.approx((mu / p2 + y / n2) / (1 / p2 + 1 / n2), rel=1e-6)
    assert float(std) == pytest.approx(np.sqrt(1 / (1 / p2 + 1 / n2)), rel=1e-6)
    # no signal variance left -> the prior mean; negligible noise -> the observation
    mean, _ = posterior_mean(np.array(mu), np.array(1.0), np.array(y), np.array(1.0))
    assert float(mean) == pytest.approx(mu, abs=1e-4)
    mean, _ = posterior_mean(np.array(mu), np.array(5.0), np.array(y), np.array(1e-9))
    assert float(mean) == pytest.approx(y, abs=1e-4)


def test_posterior_beats_prior_on_toy_problem() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 1, 100_000)
    noisy = clean + rng.normal(0, 0.5, clean.shape)
    # an oracle network: predicts N(0, 1 + 0.25) for the noisy value from "context"
    post, _ = posterior_mean(np.zeros_like(noisy), np.full_like(noisy, 1.25), noisy,
                             np.full_like(noisy, 0.25))
    mse_post = np.mean((post - clean) ** 2)
    assert mse_post == pytest.approx(0.2, rel=0.03)  # Bayes MSE = 1*0.25/1.25
    assert mse_post < np.mean(clean ** 2)  # better than the prior mean (MSE 1)


def test_nll_beta_defaults_follow_the_backbone() -> None:
    # plain NLL for the blind-spot backbone (calibrated variance for the posterior),
    # beta-NLL 0.5 for the masked U-Net (stable on smooth retraining inputs); explicit wins
    assert _config("probabilistic").nll_beta == 0.5
    assert _config("probabilistic").mean_loss == "nll"
    blind = _config("probabilistic", backbone="blindspot")
    assert blind.mean_loss == "mse" and blind.nll_beta is None
    given = _config("probabilistic", backbone="blindspot", nll_beta=1.0)
    assert given.mean_loss == "nll" and given.nll_beta == 1.0
    assert _config("probabilistic", mean_loss="mse").nll_beta is None


def test_variance_calibration_matches_the_observed_residual() -> None:
    from n2v_cascade.posterior import calibrate_variance

    rng = np.random.default_rng(5)
    mean = rng.normal(0, 1, (64, 64)).astype(np.float32)
    true_var = rng.uniform(0.5, 2.0, mean.shape).astype(np.float32)
    observed = mean + rng.normal(0, 1, mean.shape).astype(np.float32) * np.sqrt(true_var)
    for factor in (0.5, 1.0, 3.0):  # a mis-scaled prediction is scaled back
        fixed = calibrate_variance(observed, mean, true_var * factor)
        assert fixed.dtype == np.float32 and fixed.shape == mean.shape
        assert float(fixed.mean()) == pytest.approx(float(np.mean((observed - mean) ** 2)),
                                                    rel=1e-5)
        assert float(fixed.mean() / true_var.mean()) == pytest.approx(1.0, abs=0.05)
    zero = np.zeros_like(mean)
    assert calibrate_variance(observed, mean, zero) is zero  # nothing to scale


def test_blindspot_network_needs_a_resolved_radius_to_be_built_without_training() -> None:
    cfg = tiny_config(variant="blindspot")
    assert cfg.network.blind_radius == "auto" and tiny_config().network.blind_radius == 0
    with pytest.raises(InputError, match="give a number"):
        get_method(cfg).build_network()
    net = get_method(tiny_config(variant="blindspot", network={"depth": 2, "width": 8,
                                                                "blind_radius": 1})
                      ).build_network()
    assert net.shift == 2


def test_readme_method_table_is_the_registry_table() -> None:
    from pathlib import Path

    from n2v_cascade.methods import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme  # regenerate with `n2v-cascade methods --markdown`


@pytest.mark.parametrize("name", ["neighbor2neighbor", "recorrupted", "n2v"])
def test_exported_documentation_describes_and_cites_the_method(name) -> None:
    from n2v_cascade.bmz_docs import citations, readme
    from n2v_cascade.methods import method_class

    cfg = make_config(variant=name, patch_size=16, network={"depth": 2, "width": 4})
    model = Model(get_method(cfg).build_network(), cfg, Normalizer(mean=0.0, std=1.0))
    text = readme(model, name="m", tile=64, halo=8, license="CC-BY-4.0", bmz_versions="x")
    method = method_class(name)
    assert method.training_text in text
    dois = [c["doi"] for c in citations(model)]
    assert dois[0] == "10.1109/CVPR.2019.00223"  # N2V first
    assert (method.doi in dois) == bool(method.doi) and len(set(dois)) == len(dois)
