"""Standard errors of the GT-free score, and how cascades report stages they cannot rank."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import tiny_config
from n2v_cascade.cascade import Cascade, ranking_note, versus_best
from n2v_cascade.cascade_report import rank_stages
from n2v_cascade.gtfree import (
    GTFreeOptions,
    GTFreeScore,
    SelfSupervisedError,
    compare,
    gt_free_errors,
    indistinguishable,
    rank,
)


def _clean() -> np.ndarray:
    y, x = np.mgrid[0:128, 0:128].astype(np.float32) / 127.0
    clean = (0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)).astype(np.float32)
    clean[40:80, 30:100] += 0.2
    return clean


def test_standard_errors_match_the_spread_over_noise_draws() -> None:
    clean = _clean()
    blur = lambda z: ndimage.gaussian_filter(z, 1.0)  # noqa: E731
    median = lambda z: ndimage.median_filter(z, 3)  # noqa: E731
    scores, ses, diffs, diff_ses = [], [], [], []
    for seed in range(16):
        noisy = clean + np.random.default_rng(seed).normal(0, 0.1, clean.shape)
        a, b = (gt_free_errors([noisy.astype(np.float32)], [fn], GTFreeOptions(seed=seed))[0]
                for fn in (blur, median))
        scores.append(float(a))
        ses.append(a.se)
        diff, se = compare(a, b)
        diffs.append(diff)
        diff_ses.append(se)
    # the reported standard errors are the spread one would see over repeated noise
    assert 0.6 < np.mean(ses) / np.std(scores, ddof=1) < 1.6
    assert 0.6 < np.mean(diff_ses) / np.std(diffs, ddof=1) < 1.6
    # pairing cancels the shared noise: the difference is far better known than either score
    assert np.mean(diff_ses) < 0.7 * np.mean(ses)


def _score(per_pixel: np.ndarray, pixels: int = 100) -> GTFreeScore:
    counts = np.full(len(per_pixel), pixels)
    return GTFreeScore(per_pixel * pixels, counts)


def test_compare_rank_and_ties() -> None:
    rng = np.random.default_rng(0)
    first = _score(rng.normal(600.0, 30.0, 50))
    close = _score(first.sums / 100 + rng.normal(-0.05, 1.0, 50))  # within noise
    better = _score(first.sums / 100 - 3.0)  # lower in every block
    assert float(first) == pytest.approx(np.mean(first.sums / 100))
    diff, se = compare(close, first)
    assert abs(diff) < 2 * se and indistinguishable(close, first)
    assert compare(better, first) == (pytest.approx(-3.0), pytest.approx(0.0, abs=1e-9))
    assert not indistinguishable(better, first)
    assert indistinguishable(first, first)  # identical stages are not ranked either
    best, versus, ties = rank([first, close])
    assert ties == [1 - best] and versus[best] is None
    assert rank([first, better]) == (1, [pytest.approx((3.0, 0.0), abs=1e-9), None], [])
    assert compare(3.0, 5.0) == (-2.0, 0.0)  # plain floats: no standard error
    with pytest.raises(ValueError, match="same hidden pixels"):
        compare(first, _score(np.ones(3)))


_EVALUATE = SelfSupervisedError.evaluate


def _scripted(monkeypatch, scores: list[GTFreeScore]) -> None:
    """Stage k gets ``scores[k]`` (the chain's outputs are still computed for real)."""
    it = iter(scores)
    monkeypatch.setattr(SelfSupervisedError, "evaluate",
                        lambda self, fn, from_noisy=False: (next(it),
                                                            _EVALUATE(self, fn, from_noisy)[1]))


def _cascade(**kw) -> Cascade:
    return Cascade(["structured", "probabilistic"], base=tiny_config(epochs=1, steps_per_epoch=2),
                   epochs=1, retrain_epochs=1, **kw)


@pytest.mark.filterwarnings("ignore:.*spatially correlated")
def test_cascade_reports_indistinguishable_stages(noisy_pair, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    first = _score(rng.normal(600.0, 30.0, 50))
    second = _score(first.sums / 100 + rng.normal(-0.05, 1.0, 50))
    _scripted(monkeypatch, [first, second])
    m = _cascade().fit(noisy_pair[1], progress=False).manifest
    best = m["best_stage"]
    assert best == (2 if float(second) < float(first) else 1)
    assert m["indistinguishable_from_best"] == [3 - best]
    other = m["stages"][2 - best]
    diff, se = other["gt_free_vs_best"]["difference"], other["gt_free_vs_best"]["standard_error"]
    assert abs(diff) < 2 * se and m["stages"][0]["gt_free_se"] == pytest.approx(first.se)
    note = ranking_note(m)
    assert note.startswith("GT-free scores of stage 1 and stage 2 are indistinguishable: the "
                           f"difference to the lowest (stage {best}) is within 2 standard errors")
    assert note.endswith(f"(stage {3 - best} {diff:+.4g} ± {se:.2g})")
    assert versus_best(m["stages"][best - 1]) == "lowest"

    m = {"stages": [{"stage": 1, "gt_free_error": first},
                    {"stage": 2, "gt_free_error": _score(first.sums / 100 - 3.0)}]}
    rank_stages(m)  # the same ranking, on a clearly better second stage
    assert (m["best_stage"], m["indistinguishable_from_best"]) == (2, [])
    assert ranking_note(m).startswith("Lowest GT-free score: stage 2 (lower than every other")


@pytest.mark.filterwarnings("ignore:.*spatially correlated")
def test_auto_mode_stops_at_an_indistinguishable_stage(noisy_pair, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    first = _score(rng.normal(600.0, 30.0, 50))
    better = _score(first.sums / 100 - 3.0)
    slightly = _score(better.sums / 100 + rng.normal(-0.05, 1.0, 50))
    assert float(slightly) < float(better)  # lower, but not by more than 2 standard errors
    _scripted(monkeypatch, [first, better, slightly])
    casc = Cascade(["probabilistic"], base=tiny_config(epochs=1, steps_per_epoch=2), epochs=1,
                   retrain_epochs=1, auto=True, max_stages=4).fit(noisy_pair[1], progress=False)
    m = casc.manifest
    assert len(m["stages"]) == 2 and [e["stage"] for e in m["rejected"]] == [3]
    assert m["auto"]["stopped"].startswith("GT-free score of stage 3 is indistinguishable from "
                                           "stage 2's (difference -")


def test_a_stage_of_the_noisy_images_is_scored_from_the_masked_noisy_images() -> None:
    rng = np.random.default_rng(0)
    images = [rng.normal(100, 10, size=(64, 64)).astype(np.float32)]
    tracker = SelfSupervisedError(images)
    smooth = lambda x: ndimage.uniform_filter(x, 3)  # noqa: E731
    alone = tracker.evaluate(smooth)[0]
    tracker.commit(tracker.evaluate(lambda x: x + 50)[1])  # a chain far off
    chained = tracker.evaluate(smooth)[0]
    from_noisy = tracker.evaluate(smooth, from_noisy=True)[0]
    assert float(from_noisy) == pytest.approx(float(alone))
    assert chained > from_noisy + 1000
