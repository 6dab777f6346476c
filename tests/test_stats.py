"""Checks harness.stats against scipy's higher-level functions and hand-worked values.

harness.stats uses scipy only for the t distribution; everything compared here
(t.interval, sem) is scipy's own, independent code.  The paired
bootstrap is checked against exact enumeration of every equally likely replicate,
against hand-worked numbers, and by simulation (false "worse" rate and power); holm
against hand-worked values and a brute-force step-down procedure.
"""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import scipy.stats

from harness.stats import (
    BETTER,
    INCONCLUSIVE,
    SAME,
    WORSE,
    Difference,
    Sample,
    Summary,
    compare_with_best,
    holm,
    paired_bootstrap,
    summarize,
    tiers,
)

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



# --- paired bootstrap, Holm, verdicts, tiers ---


def _with_outcomes(outcomes: dict[int, list[int]]) -> Sample:
    return Sample(scores={s: float(np.mean(o)) for s, o in outcomes.items()}, outcomes=outcomes)


def _logit_offset(z: np.ndarray, accuracy: float) -> float:
    """c such that the mean of sigmoid(z + c) is `accuracy` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < accuracy:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# Simulated models: example i has a difficulty z_i (logit scale, shared by all methods,
# so their errors are correlated like real models'); a (method, seed) run gets example i
# right with probability sigmoid(z_i + c_method + e_seed), independently.  e_seed is
# the seed's random effect, scaled so that it moves accuracy by about 0.01 (sd).
_Z_POPULATION = np.random.default_rng(2024).normal(0.0, 1.5, 200_000)
_OFFSET = {acc: _logit_offset(_Z_POPULATION, acc) for acc in (0.80, 0.85)}


def _simulate(
    rng: np.random.Generator, accuracies: list[float], n_seeds: int = 3, n_examples: int = 1000
) -> list[Sample]:
    z = rng.normal(0.0, 1.5, n_examples)  # this test split's examples
    samples = []
    for acc in accuracies:
        p0 = 1 / (1 + np.exp(-(_Z_POPULATION[:20_000] + _OFFSET[acc])))
        slope = float(np.mean(p0 * (1 - p0)))  # d accuracy / d logit
        outcomes = {}
        for seed in range(n_seeds):
            effect = rng.normal(0.0, 0.01 / slope)
            p = 1 / (1 + np.exp(-(z + _OFFSET[acc] + effect)))
            outcomes[seed] = (rng.random(n_examples) < p).astype(int).tolist()
        samples.append(_with_outcomes(outcomes))
    return samples


def test_identical_methods_rarely_worse() -> None:
    """Two methods with the same true accuracy: `worse` in at most about 5% of comparisons."""
    rng = np.random.default_rng(7)
    n, worse, better, seeds_only_worse, spent, cpu = 400, 0, 0, 0, 0.0, 0.0
    for _ in range(n):
        best, other = _simulate(rng, [0.85, 0.85])
        start, start_cpu = time.perf_counter(), time.process_time()
        verdict = compare_with_best("best", {"best": best, "other": other})["other"]
        spent, cpu = spent + time.perf_counter() - start, cpu + time.process_time() - start_cpu
        assert verdict.difference.examples and verdict.difference.seeds == 3
        worse += verdict.verdict == WORSE
        better += verdict.verdict == BETTER
        # The same comparison resampling seeds only (no outcomes), for the record.
        plain = {k: Sample(s.scores) for k, s in (("best", best), ("other", other))}
        seeds_only_worse += compare_with_best("best", plain)["other"].verdict == WORSE
    print(
        f"\nidentical methods, 3 seeds x 1000 examples: worse {worse / n:.4f}, better {better / n:.4f} "
        f"of {n}; seeds-only bootstrap: worse {seeds_only_worse / n:.4f}; "
        f"{n} seed x example bootstraps of 2000 replicates took {spent:.2f} s ({cpu:.2f} s CPU)"
    )
    assert worse / n <= 0.06
    assert better / n <= 0.06


def test_five_point_gap_is_worse() -> None:
    """A true 5-point gap (0.85 vs 0.80), 3 seeds x 1000 examples: `worse` nearly always.

    Not always: with 3 seeds the percentile interval's tails are the all-worst-seed and
    all-best-seed draws (1/27 each), so the interval is wide and the test conservative.
    In this simulation the difference's sd over splits is about 0.011 (the gap is 4.5
    of them), and the measured power was 0.92 over 600 splits and 0.90 over these 100,
    so this asserts at least 85 of 100 and never `better`.  It catches a gross loss of
    power or a flipped sign, not the finer errors the enumeration test is there for.
    """
    n, verdicts = 100, []
    for seed in range(n):
        best, other = _simulate(np.random.default_rng(1000 + seed), [0.85, 0.80])
        verdicts.append(compare_with_best("best", {"best": best, "other": other})["other"].verdict)
    rate = verdicts.count(WORSE) / n
    print(f"\n5-point gap, 3 seeds x 1000 examples: worse in {rate:.2f} of {n}")
    assert rate >= 0.85
    assert BETTER not in verdicts


def _exact_distribution(d_outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every equally likely replicate of the seed x shared-example bootstrap: (values, probabilities)."""
    n_seeds, n_examples = d_outcomes.shape
    values = []
    for seeds in itertools.product(range(n_seeds), repeat=n_seeds):
        for examples in itertools.product(range(n_examples), repeat=n_examples):
            values.append(np.mean([np.mean([d_outcomes[s, i] for i in examples]) for s in seeds]))
    atoms, counts = np.unique(np.round(values, 12), return_counts=True)
    return atoms, counts / counts.sum()


def _exact_quantile(atoms: np.ndarray, probs: np.ndarray, q: float) -> float:
    """Smallest atom whose CDF reaches q; checks q is not within 0.002 of a CDF step."""
    cdf = np.cumsum(probs)
    assert np.min(np.abs(cdf - q)) > 0.002, "q too close to a step: the test would be ambiguous"
    return float(atoms[np.searchsorted(cdf, q)])


def test_bootstrap_matches_exact_enumeration() -> None:
    # 2 seeds x 3 examples: 2^2 seed draws x 3^3 example draws, all equally likely.
    # These data were picked so that the exact 95% interval, [-1, 1/2], differs from
    # what drawing the examples independently for each drawn seed, or for each of the
    # two configurations, would give ([-2/3, 1/3] both, enumerated the same way).
    best = _with_outcomes({0: [0, 1, 1], 1: [1, 1, 1]})
    other = _with_outcomes({0: [1, 0, 0], 1: [1, 1, 1]})
    d_outcomes = np.array([[1, -1, -1], [0, 0, 0]])
    atoms, probs = _exact_distribution(d_outcomes)
    assert (_exact_quantile(atoms, probs, 0.025), _exact_quantile(atoms, probs, 0.975)) == (-1.0, 0.5)
    got = paired_bootstrap(best, other, n_boot=200_000, rng_seed=3)
    assert got.examples and got.seeds == 2
    assert got.diff == pytest.approx(-1 / 6)  # (-1/3 + 0) / 2
    assert got.low == pytest.approx(_exact_quantile(atoms, probs, 0.025), abs=1e-9)
    assert got.high == pytest.approx(_exact_quantile(atoms, probs, 0.975), abs=1e-9)
    assert got.eq_low == pytest.approx(_exact_quantile(atoms, probs, 0.05), abs=1e-9)
    assert got.eq_high == pytest.approx(_exact_quantile(atoms, probs, 0.95), abs=1e-9)
    exact_p = min(1.0, 2 * min(probs[atoms <= 0].sum(), probs[atoms >= 0].sum()))
    assert got.p == pytest.approx(exact_p, abs=0.01)
    # More of the distribution than four quantiles: intervals at other levels.
    checked = 0
    for q in (0.1, 0.15, 0.2, 0.3, 0.4):
        cdf = np.cumsum(probs)
        if min(np.min(np.abs(cdf - q)), np.min(np.abs(cdf - (1 - q)))) > 0.002:
            at_level = paired_bootstrap(best, other, n_boot=200_000, rng_seed=3, level=1 - 2 * q)
            assert at_level.low == pytest.approx(_exact_quantile(atoms, probs, q), abs=1e-9)
            assert at_level.high == pytest.approx(_exact_quantile(atoms, probs, 1 - q), abs=1e-9)
            checked += 1
    assert checked >= 3


def test_bootstrap_seeds_only_by_hand() -> None:
    # Differences -0.03, +0.01, -0.05; 27 equally likely seed draws.  P(mean = -0.05) =
    # P(mean = +0.01) = 1/27 = 0.037 > 0.025, so the 95% interval is [-0.05, +0.01].
    # For the 90% interval: the next atoms inward are -13/300 (one -0.03, two -0.05;
    # 3/27) and -1/300 (one -0.03, two +0.01; 3/27).  Only the all-+0.01 draw has a
    # mean >= 0: p = 2/27.
    best = Sample({0: 0.5, 1: 0.5, 2: 0.5})
    other = Sample({0: 0.47, 1: 0.51, 2: 0.45})
    got = paired_bootstrap(best, other, n_boot=200_000, rng_seed=1)
    assert not got.examples and got.seeds == 3
    assert got.diff == pytest.approx(-0.07 / 3)
    assert (got.low, got.high) == (pytest.approx(-0.05), pytest.approx(0.01))
    assert (got.eq_low, got.eq_high) == (pytest.approx(-13 / 300), pytest.approx(-1 / 300))
    assert got.p == pytest.approx(2 / 27, abs=0.003)
    # Two seeds, both worse: the p-value is at its floor 2 / (n_boot + 1).
    two = paired_bootstrap(Sample({0: 0.8, 1: 0.9}), Sample({0: 0.78, 1: 0.86}), n_boot=999)
    assert two.diff == pytest.approx(-0.03)
    assert (two.low, two.high) == (pytest.approx(-0.04), pytest.approx(-0.02))
    assert two.p == pytest.approx(2 / 1000)


def test_bootstrap_edge_cases() -> None:
    a = _with_outcomes({0: [1, 0, 1, 1], 1: [0, 1, 1, 1]})
    # Identical data: every replicate is exactly 0, p = 1, interval [0, 0].
    same = paired_bootstrap(a, a)
    assert same == Difference(0.0, 0.0, 0.0, 0.0, 0.0, 1.0, seeds=2, examples=True)
    assert paired_bootstrap(Sample({0: 0.9, 1: 0.8}), Sample({0: 0.9, 1: 0.8})).p == 1.0
    # No paired seed: everything nan.
    none = paired_bootstrap(Sample({0: 0.9}), Sample({1: 0.8}))
    assert none.seeds == 0 and not none.examples
    assert all(math.isnan(x) for x in (none.diff, none.low, none.high, none.eq_low, none.eq_high, none.p))
    # One seed, no outcomes: a difference but nothing to resample.
    one = paired_bootstrap(Sample({0: 0.9}), Sample({0: 0.8}))
    assert one.seeds == 1 and one.diff == pytest.approx(-0.1) and math.isnan(one.p) and math.isnan(one.low)
    # One seed with outcomes: the examples are resampled.
    one_ex = paired_bootstrap(_with_outcomes({0: [1] * 30}), _with_outcomes({0: [0] * 10 + [1] * 20}))
    assert one_ex.examples and one_ex.seeds == 1 and one_ex.p < 0.01 and one_ex.high < 0
    # Outcomes on one side only, or missing for a paired seed: seeds only.
    assert not paired_bootstrap(a, Sample(a.scores)).examples
    partial = Sample(a.scores, {0: a.outcomes[0]})
    assert not paired_bootstrap(a, partial).examples
    # Reproducible for a fixed rng_seed; another seed gives other draws.
    b = _with_outcomes({0: [1, 1, 0, 0], 1: [0, 1, 0, 1]})
    assert paired_bootstrap(a, b, rng_seed=5) == paired_bootstrap(a, b, rng_seed=5)
    assert paired_bootstrap(a, b, rng_seed=5) != paired_bootstrap(a, b, rng_seed=6)
    with pytest.raises(ValueError):  # not the same test split
        paired_bootstrap(a, _with_outcomes({0: [1, 0, 1], 1: [0, 1, 1]}))
    with pytest.raises(ValueError):  # a score that is not the mean of its outcomes (macro_f1)
        paired_bootstrap(a, Sample({0: 0.61, 1: 0.7}, b.outcomes))
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, level=1.0)


def test_failed_seed_is_dropped() -> None:
    best = Sample({0: 0.90, 1: 0.91, 2: 0.92, 3: 0.93})
    other = Sample({0: 0.88, 1: float("nan"), 2: 0.90, 3: None, 4: 0.95})
    got = paired_bootstrap(best, other)
    assert got.seeds == 2  # seeds 0 and 2; 1 and 3 failed, 4 not run for best
    assert got.diff == pytest.approx(-0.02)
    assert got == paired_bootstrap(Sample({0: 0.90, 2: 0.92}), Sample({0: 0.88, 2: 0.90}))
    # With outcomes: the failed seed has none, and the others are still resampled.
    outcomes = {0: [1, 1, 0, 1], 2: [1, 0, 0, 1]}
    failed = Sample({0: 0.75, 1: float("inf"), 2: 0.5}, outcomes)
    got = paired_bootstrap(_with_outcomes({0: [1, 1, 1, 1], 1: [1, 1, 1, 0], 2: [1, 1, 0, 1]}), failed)
    assert got.seeds == 2 and got.examples


def test_holm_by_hand() -> None:
    # Sorted: 0.01 x 4 = 0.04; 0.03 x 3 = 0.09; 0.04 x 2 = 0.08 -> raised to 0.09 (monotone);
    # 0.2 x 1 = 0.2.
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.2})
    assert list(got) == ["a", "b", "c", "d"]
    assert [got[k] for k in "abcd"] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}  # capped at 1
    assert holm({"only": 0.03}) == {"only": 0.03}
    assert holm({}) == {}
    # nan (and None) stay nan and are not counted in m: m = 2 here.
    got = holm({"a": float("nan"), "b": 0.01, "c": 0.02, "d": None})
    assert got["b"] == pytest.approx(0.02) and got["c"] == pytest.approx(0.02)
    assert math.isnan(got["a"]) and math.isnan(got["d"])


def _holm_rejects(pvalues: list[float], alpha: float) -> set[int]:
    """Holm's step-down procedure as usually stated: reject H_(j) while p_(j) <= alpha / (m - j + 1)."""
    m = len(pvalues)
    rejected = set()
    for j, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        if pvalues[i] * (m - j) > alpha:
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_step_down_definition(seed: int) -> None:
    # The adjusted p-value of H_i is the smallest alpha at which the step-down procedure
    # rejects H_i; that alpha is one of the m thresholds (m - j + 1) p_(j), or 1.
    rng = np.random.default_rng(seed)
    p = list(rng.uniform(0, 0.2, 8) ** 2)
    p[3] = p[5]  # a tie
    m = len(p)
    candidates = sorted({min(1.0, (m - j) * x) for j, x in enumerate(sorted(p))} | {1.0})
    expected = [min(a for a in candidates if i in _holm_rejects(p, a)) for i in range(m)]
    got = holm(dict(enumerate(p)))
    assert [got[i] for i in range(m)] == pytest.approx(expected, rel=1e-12)


def test_verdicts() -> None:
    rng = np.random.default_rng(11)
    base = {s: (rng.random(1000) < 0.85).astype(int).tolist() for s in range(3)}
    # Identical but for 2 of 1,000 examples that the other row gets wrong: diff -0.002.
    near = {s: [0, 0] + o[2:] for s, o in base.items()}
    for o in base.values():
        o[0] = o[1] = 1
    best, equivalent = _with_outcomes(base), _with_outcomes(near)
    # Seeds only, 3 noisy seeds: cannot tell either way.
    noisy = Sample({0: 0.83, 1: 0.78, 2: 0.79})
    noisy_best = Sample({0: 0.80, 1: 0.85, 2: 0.75})
    got = compare_with_best("best", {"best": best, "eq": equivalent})
    assert got["eq"].verdict == SAME, got["eq"]
    assert got["eq"].difference.diff == pytest.approx(-0.002)
    assert compare_with_best("b", {"b": noisy_best, "n": noisy})["n"].verdict == INCONCLUSIVE
    # With margin 0.001 the near-identical row is no longer shown equivalent.
    assert compare_with_best("best", {"best": best, "eq": equivalent}, margin=0.001)["eq"].verdict == INCONCLUSIVE

    # Five seeds, every one 2-4 points lower: worse for accuracy, better for a loss.
    high = Sample({s: 0.90 + 0.01 * s for s in range(5)})
    low = Sample({s: 0.87 + 0.01 * s - 0.005 * (s % 2) for s in range(5)})
    assert compare_with_best("h", {"h": high, "l": low})["l"].verdict == WORSE
    assert compare_with_best("h", {"h": high, "l": low}, higher_is_better=False)["l"].verdict == BETTER
    # A row better on test than the best (chosen on validation) row.
    assert compare_with_best("l", {"l": low, "h": high})["h"].verdict == BETTER
    assert compare_with_best("l", {"l": low, "h": high}, higher_is_better=False)["h"].verdict == WORSE

    # No paired seed, or one seed without outcomes: inconclusive, p_holm nan.
    lone = compare_with_best("h", {"h": high, "x": Sample({9: 0.5}), "y": Sample({0: 0.5})})
    assert lone["x"].verdict == lone["y"].verdict == INCONCLUSIVE
    assert math.isnan(lone["x"].p_holm) and math.isnan(lone["y"].p_holm)


def test_compare_with_best_uses_holm_over_rows() -> None:
    rng = np.random.default_rng(5)
    rows = {
        f"r{i}": _with_outcomes({s: (rng.random(300) < 0.8 - 0.01 * i).astype(int).tolist() for s in range(3)})
        for i in range(5)
    }
    got = compare_with_best("r0", rows)
    assert list(got) == ["r1", "r2", "r3", "r4"]  # every row but the best, in order
    separate = {k: paired_bootstrap(rows["r0"], rows[k]) for k in got}
    assert all(got[k].difference == separate[k] for k in got)  # same rng_seed per comparison
    adjusted = holm({k: d.p for k, d in separate.items()})
    assert all(got[k].p_holm == adjusted[k] for k in got)
    for k, v in got.items():
        if v.verdict == WORSE:
            assert v.p_holm < 0.05 and v.difference.diff < 0
        else:
            assert v.p_holm >= 0.05
    with pytest.raises(KeyError):
        compare_with_best("missing", rows)


def test_tiers() -> None:
    rng = np.random.default_rng(3)
    a = {s: (rng.random(1000) < 0.9).astype(int).tolist() for s in range(3)}
    for o in a.values():
        o[0] = o[1] = 1
    b = {s: [0, 0] + o[2:] for s, o in a.items()}  # A but for 2 examples: A ≈ B
    c = {s: (rng.random(1000) < 0.7).astype(int).tolist() for s in range(3)}  # clearly worse
    samples = {"A": _with_outcomes(a), "B": _with_outcomes(b), "C": _with_outcomes(c)}
    assert compare_with_best("A", samples)["B"].verdict == SAME
    assert tiers(["A", "B", "C"], samples) == {"A": 1, "B": 1, "C": 2}
    # A row with no finite score goes last; the returned order follows `order`.
    samples["D"] = Sample({0: float("nan"), 1: None})
    assert tiers(["D", "A", "B", "C"], samples) == {"D": 3, "A": 1, "B": 1, "C": 2}
    # C as the validation-best reference: A and B are better than it, so they join it.
    assert tiers(["C", "A", "B"], samples) == {"C": 1, "A": 1, "B": 1}
    # Lower is better (a loss): C's lower numbers make A and B worse than it.
    assert tiers(["C", "A", "B"], samples, higher_is_better=False) == {"C": 1, "A": 2, "B": 2}


# --- bootstrap_interval: one row's own interval, resampled like paired_bootstrap ---


def test_bootstrap_interval_matches_exact_enumeration() -> None:
    from harness.stats import bootstrap_interval

    # 2 seeds x 3 examples.  The exact 95% interval is [0, 1]; drawing the examples
    # independently for each drawn seed would give [1/6, 1] (enumerated the same way).
    outcomes = np.array([[0, 0, 1], [1, 1, 1]])
    atoms, probs = _exact_distribution(outcomes)
    sample = _with_outcomes({0: [0, 0, 1], 1: [1, 1, 1]})
    for level in (0.95, 0.8, 0.6, 0.4):
        q = (1 - level) / 2
        low, high = bootstrap_interval(sample, level=level, n_boot=200_000, rng_seed=3)
        assert low == pytest.approx(_exact_quantile(atoms, probs, q), abs=1e-9), level
        assert high == pytest.approx(_exact_quantile(atoms, probs, 1 - q), abs=1e-9), level
    assert bootstrap_interval(sample, n_boot=200_000, rng_seed=3)[0] == 0.0


def test_bootstrap_interval_seeds_only_and_edge_cases() -> None:
    from harness.stats import bootstrap_interval

    # 3 seeds, no outcomes: 27 equally likely ordered draws.  The mean is 0.90 (every draw the
    # lowest seed) with probability 1/27 > 2.5%, likewise 0.92: the 95% interval is [0.90, 0.92];
    # the central 50% is [0.90 + 0.02 * 1/3, 0.90 + 0.02 * 2/3], where the CDF crosses 1/4 and 3/4.
    three = Sample(scores={0: 0.90, 1: 0.91, 2: 0.92, 3: float("nan")})  # a diverged seed is dropped
    assert bootstrap_interval(three, n_boot=100_000) == pytest.approx((0.90, 0.92), abs=1e-12)
    assert bootstrap_interval(three, level=0.5, n_boot=100_000) == pytest.approx((0.90 + 0.02 / 3, 0.92 - 0.02 / 3), abs=1e-12)
    assert all(math.isnan(x) for x in bootstrap_interval(Sample(scores={0: 0.9})))  # nothing to resample
    assert all(math.isnan(x) for x in bootstrap_interval(Sample(scores={0: float("nan")})))
    assert bootstrap_interval(Sample(scores={0: 0.8, 1: 0.8})) == (0.8, 0.8)
    assert bootstrap_interval(three, rng_seed=5) == bootstrap_interval(three, rng_seed=5)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(three, level=1.0)


def test_bootstrap_interval_of_one_seed_is_the_binomial_interval() -> None:
    from harness.stats import bootstrap_interval

    # 400 examples at 0.88, one seed: 0.88 +- 1.96 sqrt(0.88 * 0.12 / 400) = +-0.0318
    right = [1] * 352 + [0] * 48
    low, high = bootstrap_interval(_with_outcomes({0: right}), n_boot=20_000)
    half = 1.96 * math.sqrt(0.88 * 0.12 / 400)
    assert low == pytest.approx(0.88 - half, abs=0.004) and high == pytest.approx(0.88 + half, abs=0.004)
    # three identical seeds add no seed spread, and the shared example draw adds no more example noise
    same = bootstrap_interval(_with_outcomes({0: right, 1: right, 2: right}), n_boot=20_000)
    assert same == pytest.approx((low, high), abs=0.004)
