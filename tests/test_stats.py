"""Checks harness.stats against scipy's higher-level functions and hand-worked values.

harness.stats uses scipy only for the t distribution; everything compared here
(t.interval, sem, ttest_ind, rankdata) is scipy's own, independent code.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness.stats import Summary, Welch, average_ranks, mean_ranks, same_as_best, summarize, welch

SAMPLES = {
    2: [0.91, 0.95],
    3: [0.962, 0.971, 0.958],
    5: [0.80, 0.84, 0.79, 0.88, 0.83],
    30: list(np.random.default_rng(0).normal(0.9, 0.02, size=30)),
}


@pytest.mark.parametrize("n", sorted(SAMPLES))
def test_summarize_matches_scipy_interval(n: int) -> None:
    x = SAMPLES[n]
    s = summarize(x)
    assert s.n == n
    assert s.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert s.sd == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    low, high = scipy.stats.t.interval(0.95, n - 1, loc=np.mean(x), scale=scipy.stats.sem(x))
    assert s.low == pytest.approx(low, rel=1e-10)
    assert s.high == pytest.approx(high, rel=1e-10)
    assert s.half_width == pytest.approx((high - low) / 2, rel=1e-10)
    assert s.level == 0.95


def test_summarize_other_level() -> None:
    x = SAMPLES[5]
    low, high = scipy.stats.t.interval(0.9, 4, loc=np.mean(x), scale=scipy.stats.sem(x))
    s = summarize(x, level=0.9)
    assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))
    with pytest.raises(ValueError):
        summarize(x, level=1.0)


def test_summarize_textbook_value() -> None:
    # 1..5: mean 3, sd sqrt(2.5); t_{0.975,4} = 2.776 from any t table, so the
    # half-width is 2.776 * sqrt(2.5) / sqrt(5) = 2.776 / sqrt(2) = 1.963.
    s = summarize([1, 2, 3, 4, 5])
    assert s.mean == 3.0
    assert s.sd == pytest.approx(math.sqrt(2.5))
    assert s.half_width / (s.sd / math.sqrt(5)) == pytest.approx(2.776, abs=5e-4)
    assert s.half_width == pytest.approx(1.963, abs=5e-4)


def test_summarize_small_and_empty() -> None:
    one = summarize([0.97])
    assert one.n == 1 and one.mean == 0.97
    assert math.isnan(one.sd) and math.isnan(one.half_width)
    assert math.isnan(one.low) and math.isnan(one.high)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.half_width)
    constant = summarize([0.1, 0.1, 0.1])  # mean of 0.1s is not exactly 0.1 in floats
    assert constant.sd == 0.0 and constant.half_width == 0.0


def test_summarize_drops_non_finite() -> None:
    s = summarize([0.9, float("nan"), 0.8, None, float("inf"), 0.7])
    assert s == summarize([0.9, 0.8, 0.7])
    assert s.n == 3
    assert isinstance(s, Summary)


WELCH_CASES = [
    ([0.91, 0.93, 0.92], [0.88, 0.90, 0.86]),  # equal n
    ([0.97, 0.96, 0.98, 0.97, 0.975], [0.90, 0.95]),  # unequal n
    ([1.0, 1.1, 0.9, 1.05], [2.0, 0.5, 3.1, 1.2, 0.1, 2.6]),  # very unequal variances
    ([5.0, 5.0001, 4.9999], [5.0, 5.0002, 4.9998, 5.0]),  # same mean
    ([0.5, 0.6], [0.55, 0.75, 0.65]),  # n = 2
]


def _welch_satterthwaite(a: list[float], b: list[float]) -> float:
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


@pytest.mark.parametrize("a,b", WELCH_CASES)
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    ours = welch(a, b)
    ref = scipy.stats.ttest_ind(a, b, equal_var=False)
    assert ours.t == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.df == pytest.approx(_welch_satterthwaite(a, b), rel=1e-12)
    # Symmetric: swapping the samples flips t only.
    swapped = welch(b, a)
    assert swapped.t == pytest.approx(-ours.t, abs=1e-12)
    assert (swapped.df, swapped.p) == (pytest.approx(ours.df), pytest.approx(ours.p))


def test_welch_drops_nan_and_needs_two_values() -> None:
    a, b = [0.91, 0.93, float("nan"), 0.92], [0.88, None, 0.90, 0.86]
    assert welch(a, b) == welch([0.91, 0.93, 0.92], [0.88, 0.90, 0.86])
    for x, y in [([0.9], [0.8, 0.7]), ([0.9, 0.8], [0.7, float("nan")]), ([], [])]:
        w = welch(x, y)
        assert math.isnan(w.t) and math.isnan(w.df) and math.isnan(w.p)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # scipy, on the constant sample
def test_welch_zero_variance_conventions() -> None:
    up = welch([0.9, 0.9, 0.9], [0.8, 0.8])
    assert up.t == math.inf and up.p == 0.0 and math.isnan(up.df)
    down = welch([0.8, 0.8], [0.9, 0.9, 0.9])
    assert down.t == -math.inf and down.p == 0.0
    same = welch([0.9, 0.9], [0.9, 0.9, 0.9])
    assert same == Welch(t=0.0, df=same.df, p=1.0) and math.isnan(same.df)
    # Only one side constant: the ordinary formula applies, and agrees with scipy.
    a, b = [0.9, 0.9, 0.9], [0.8, 0.85, 0.83]
    ref = scipy.stats.ttest_ind(a, b, equal_var=False)
    assert welch(a, b).p == pytest.approx(ref.pvalue)
    assert welch(a, b).df == pytest.approx(2.0)  # all the variance is b's: df = nb - 1


def test_same_as_best() -> None:
    best = [0.970, 0.972, 0.968, 0.971]
    assert same_as_best(best, [0.80, 0.81, 0.79, 0.80]) is False
    assert same_as_best(best, [0.969, 0.973, 0.967, 0.972]) is True
    assert same_as_best(best, [0.95]) is None
    assert same_as_best([0.97], best) is None
    # alpha is the threshold on p.
    a, b = [0.91, 0.93, 0.92], [0.88, 0.90, 0.86]
    p = welch(a, b).p
    assert same_as_best(a, b, alpha=p / 2) is True
    assert same_as_best(a, b, alpha=p * 2) is False


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_average_ranks_matches_rankdata(higher_is_better: bool) -> None:
    scores = {"a": 0.9, "b": 0.95, "c": 0.9, "d": 0.7, "e": 0.95, "f": 0.9, "g": 0.99}
    values = np.array(list(scores.values()))
    ref = scipy.stats.rankdata(-values if higher_is_better else values, method="average")
    ours = average_ranks(scores, higher_is_better)
    assert list(ours) == list(scores)
    assert [ours[k] for k in scores] == pytest.approx(list(ref))


def test_average_ranks_by_hand_and_nan() -> None:
    scores = {"x": 0.8, "y": float("nan"), "z": 0.9, "w": 0.8}
    assert average_ranks(scores, higher_is_better=True) == {"x": 2.5, "z": 1.0, "w": 2.5}
    assert average_ranks(scores, higher_is_better=False) == {"x": 1.5, "z": 3.0, "w": 1.5}
    assert average_ranks({}, True) == {}


def test_mean_ranks_hand_worked() -> None:
    per_task = {
        # accuracy: x first, y and z tie for 2nd/3rd -> 2.5 each; w diverged (nan).
        "sentiment": {"x": 0.9, "y": 0.8, "z": 0.8, "w": float("nan")},
        # loss (lower is better), z was not run: y 1st, x 2nd.
        "lm": {"x": 2.0, "y": 1.0},
    }
    got = mean_ranks(per_task, {"sentiment": True, "lm": False})
    assert list(got) == ["x", "y", "z", "w"]
    assert got["x"] == (1.5, 2)  # (1 + 2) / 2
    assert got["y"] == (1.75, 2)  # (2.5 + 1) / 2
    assert got["z"] == (2.5, 1)  # only ranked on sentiment
    assert math.isnan(got["w"][0]) and got["w"][1] == 0
