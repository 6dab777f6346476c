"""The statistics the leaderboard prints: seed summaries, comparisons with the best row, tiers.

A leaderboard row is the mean over a configuration's seeds.  Readers also need to know
how sure that mean is and whether the difference from the best row is more than noise,
and, across several tasks, which configuration is best overall:

- `summarize`: mean, sample sd and the Student-t confidence interval of the mean.
- `paired_bootstrap`: the difference of a row from the best row, with a bootstrap
  interval and p-value that resample the paired seeds and, when per-example outcomes
  are known, the test examples as well (see its docstring for why both).
- `holm`: Holm-Bonferroni adjusted p-values for a family of comparisons.
- `compare_with_best` / `tiers`: a verdict (worse / ≈ / inconclusive / better) for
  every row against the best row, Holm-corrected over the rows compared with it, and
  groups of rows that cannot be told apart, for the overall table.

scipy is used only for the Student t distribution itself (`scipy.stats.t.ppf` for the
interval's quantile); the bootstrap uses numpy's
random generator, quantile and linear algebra.  Every other piece of arithmetic (means,
sd, interval half-width, the bootstrap resampling, percentile intervals' p-values,
Holm's step-down adjustment) is written out here.  That way the tests can check it
against scipy's `t.interval` and against brute-force enumeration as independent implementations rather
than against itself.  We write the bootstrap ourselves because `scipy.stats.bootstrap`
resamples observations of one level only: it cannot draw seeds with replacement and,
within the same replicate, one set of test examples shared by both configurations and
every drawn seed; the two-level resample is about 40 lines of numpy.  scipy and numpy
are imported inside the functions that need them, so importing this module stays
cheap.

Values that are NaN, infinite or None (a diverged or missing seed) are dropped
everywhere: they are not measurements of the configuration's score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Sequence, TypeVar

NAN = float("nan")

K = TypeVar("K", bound=Hashable)


def _finite(values: Iterable[float | None]) -> list[float]:
    """The values that are real measurements: no None, NaN or +-inf."""
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def _mean(xs: list[float]) -> float:
    # fsum: exact summation, so the mean does not depend on the order of the seeds.
    return math.fsum(xs) / len(xs) if xs else NAN


def _var(xs: list[float], mean: float) -> float:
    """Sample variance (ddof=1); nan for fewer than two values."""
    if len(xs) < 2:
        return NAN
    if min(xs) == max(xs):
        # Identical seeds: exactly 0, not the rounding residue of (x - mean) where the
        # mean of equal floats need not be bit-identical to them.
        return 0.0
    return math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


@dataclass(frozen=True)
class Summary:
    """Mean of a configuration's seeds with its Student-t confidence interval.

    n: finite values used; mean: nan when n == 0; sd: sample sd (ddof=1), nan when
    n < 2; half_width: t_{(1+level)/2, n-1} * sd / sqrt(n), nan when n < 2.
    """

    n: int
    mean: float
    sd: float
    half_width: float
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def _t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (scipy's t.ppf)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def summarize(values: Iterable[float | None], level: float = 0.95) -> Summary:
    """Mean, sd and `level` confidence interval of the finite values (NaN/inf/None dropped)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    xs = _finite(values)
    n = len(xs)
    mean = _mean(xs)
    if n < 2:
        # One seed says nothing about seed-to-seed spread: no sd, no interval.
        return Summary(n=n, mean=mean, sd=NAN, half_width=NAN, level=level)
    sd = math.sqrt(_var(xs, mean))
    half = _t_quantile((1.0 + level) / 2.0, n - 1) * sd / math.sqrt(n)
    return Summary(n=n, mean=mean, sd=sd, half_width=half, level=level)


# --- Comparing every row with the best row: paired bootstrap, Holm, verdicts, tiers ---

WORSE = "worse"
SAME = "≈"
INCONCLUSIVE = "inconclusive"
BETTER = "better"


@dataclass(frozen=True)
class Sample:
    """One configuration's results on one task.

    scores: seed -> test score.  NaN, +-inf or None marks a failed or diverged seed,
    which is dropped.
    outcomes: seed -> per-example 0/1 correctness on the test split, in the same
    example order for every seed and configuration (e.g. `harness.metrics.
    unpack_outcomes` of the logged string), or None.  Pass outcomes only when each
    seed's score IS the mean of its outcomes (accuracy, exact match); for a metric
    that is not such a mean (macro_f1, a loss) pass None, and the bootstrap
    resamples seeds only.
    """

    scores: Mapping[int, float | None]
    outcomes: Mapping[int, Sequence[int]] | None = None


@dataclass(frozen=True)
class Difference:
    """How `other` differs from `best` on one task, from `paired_bootstrap`.

    diff: mean over the paired seeds of (other - best) test scores, in the metric's
    raw units (-0.031 = 3.1 points of accuracy lower), on the original data.
    low, high: percentile bootstrap interval of diff at `level` (0.95 by default).
    eq_low, eq_high: the percentile interval at 1 - 2*alpha (0.90), for equivalence:
    it lies inside [-margin, +margin] exactly when both one-sided tests of TOST
    reject at alpha.
    p: two-sided bootstrap p-value for diff == 0, uncorrected for multiple rows.
    seeds: number of paired seeds used; examples: whether test examples were
    resampled too.  diff is nan with no paired seed; low/high/eq_*/p are nan when
    there is nothing to resample (no paired seed, or one seed without outcomes).
    """

    diff: float
    low: float
    high: float
    eq_low: float
    eq_high: float
    p: float
    seeds: int
    examples: bool


def _finite_score(v: float | None) -> bool:
    return v is not None and math.isfinite(float(v))


def _outcome_matrix(sample: Sample, seeds: list[int]):
    """The paired seeds' outcomes as an int8 (seeds, examples) array; None when any is missing."""
    import numpy as np

    if sample.outcomes is None or any(sample.outcomes.get(s) is None for s in seeds):
        return None
    rows = [np.asarray(sample.outcomes[s]) for s in seeds]
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1 or rows[0].size == 0:
        shapes = sorted({r.shape for r in rows})
        raise ValueError(f"outcomes must be non-empty 1-d sequences of one length, got shapes {shapes}")
    m = np.stack(rows)
    if not np.isin(m, (0, 1)).all():
        raise ValueError("outcomes must be 0/1")
    m = m.astype(np.int8)
    # The bootstrap computes each seed's score as the mean of its outcomes, so they must
    # be the same number; half an example of slack lets logged scores be rounded.
    tolerance = max(1e-9, 0.5 / m.shape[1])
    for s, row in zip(seeds, m):
        if abs(float(row.mean()) - float(sample.scores[s])) > tolerance:
            raise ValueError(
                f"seed {s}: score {sample.scores[s]} is not the mean of its outcomes ({row.mean():.6g}); "
                "pass outcomes=None for a metric that is not a mean of per-example 0/1"
            )
    return m


def _sums_over_draws(dd, n_boot: int, rng):
    """sums[b, s] = sum of dd[s, i] over the i of replicate b's example draw (shared by all s).

    dd: (S, N) integers in {-1, 0, 1}.  Each replicate draws N example indices with
    replacement.  To gather once per example instead of once per (seed, example), the
    digits dd + 1 (0..2) of several seeds are packed into one int64 in base 2N + 1: a
    sum of N such digits is at most 2N, so the packed sums never carry between seeds.
    """
    import numpy as np

    n_seeds, n_ex = dd.shape
    base = 2 * n_ex + 1
    per_word = 1
    while base ** (per_word + 1) <= 2**63 - 1:
        per_word += 1
    groups = [range(g, min(g + per_word, n_seeds)) for g in range(0, n_seeds, per_word)]
    packed = [sum((dd[s] + 1) * base**k for k, s in enumerate(group)) for group in groups]
    index_type = np.uint16 if n_ex <= 2**16 else np.int64
    sums = np.empty((n_boot, n_seeds), dtype=np.int64)
    chunk = max(1, 2_000_000 // n_ex)  # bounds the (chunk, N) draw matrices' memory
    for start in range(0, n_boot, chunk):
        rows = slice(start, min(start + chunk, n_boot))
        draws = rng.integers(0, n_ex, size=(rows.stop - rows.start, n_ex), dtype=index_type)
        for group, word in zip(groups, packed):
            total = word[draws].sum(axis=1)
            for k, s in enumerate(group):
                sums[rows, s] = (total // base**k) % base - n_ex
    return sums


def paired_bootstrap(
    best: Sample, other: Sample, *, n_boot: int = 2000, rng_seed: int = 0, level: float = 0.95, alpha: float = 0.05
) -> Difference:
    """Paired bootstrap of mean(other - best) over seeds and, when known, test examples.

    Pairing: the seeds present in both samples with a finite score in each; the same
    seed means the same head initialisation and batch order, so each seed's difference
    cancels what the two runs share.

    One replicate draws the paired seeds with replacement.  If both samples have
    outcomes for every paired seed, it also draws ONE set of test-example indices with
    replacement, shared by both configurations and every drawn seed, and recomputes each
    drawn seed's score as the mean of its outcomes over those indices.  The replicate's
    statistic is the mean over the drawn seeds of (other - best).  Without outcomes it
    resamples seeds only, on the scores.  The interval is the percentile interval of the
    `n_boot` replicates; p = min(1, 2 * min(#{rep <= 0} + 1, #{rep >= 0} + 1) / (n_boot + 1)),
    never exactly 0, and 1 when every replicate is exactly 0 (identical data).  The
    point estimate `diff` is the mean of the paired score differences, not resampled.

    Why seeds AND examples: a row's score varies with the seed (initialisation, batch
    order) and with which examples happen to be in the test split; the split is a sample
    too.  With 400 test examples at about 88% accuracy the binomial standard error of
    one score, sqrt(p(1-p)/n), is about +-0.016 (a 95% half-width of about +-0.03),
    comparable to or larger than typical seed-to-seed spread.  Seed resampling alone
    sees only the part of that noise that differs between seeds, not the part every
    seed shares because all runs are scored on the same split.  Drawing one shared
    index set per replicate keeps the pairing: an example that is hard for the best
    row is hard for the other row in the same replicate, so the difference's interval
    is not inflated by noise the two rows share.

    Limits: with few seeds the seed level is weak.  The bootstrap variance of a mean of
    n values is (n-1)/n times the usual unbiased estimate (2/3 with 3 seeds), so the
    seed part of the variance is underestimated; and with 3 seeds there are only 10
    distinct seed draws (27 ordered ones), so the percentile tails are lumpy.
    Seeds only (no outcomes) this is serious: whenever all the paired differences
    have the same sign no replicate crosses 0 and p sits at its floor 2/(n_boot+1),
    which two identical configurations with 3 seeds do 1 time in 4 (a false `worse`
    about 1 time in 8: 0.13 measured in the tests).  Treat seeds-only p-values from
    fewer than about 6 seeds as unreliable.  With outcomes the example level smooths
    this out (false `worse` 0.0175 measured on 3 seeds x 1000 examples, power 0.9 for
    a 5-point gap): with 3 seeds the test is conservative rather than liberal, partly
    because the example draws count again some of the per-run noise that the seeds'
    spread already shows.  With one seed and no outcomes there is nothing to resample:
    interval and p are nan.  Results are reproducible: the draws come from numpy's
    default_rng(rng_seed) and depend only on the number of paired seeds and examples,
    not on the data.
    """
    import numpy as np

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    seeds = sorted(
        s for s in best.scores if s in other.scores and _finite_score(best.scores[s]) and _finite_score(other.scores[s])
    )
    n_seeds = len(seeds)
    if n_seeds == 0:
        return Difference(NAN, NAN, NAN, NAN, NAN, NAN, seeds=0, examples=False)
    d = np.array([float(other.scores[s]) - float(best.scores[s]) for s in seeds])
    diff = math.fsum(d) / n_seeds
    b_out = _outcome_matrix(best, seeds)
    o_out = _outcome_matrix(other, seeds) if b_out is not None else None
    examples = b_out is not None and o_out is not None
    if examples and b_out.shape != o_out.shape:
        raise ValueError(
            f"best has {b_out.shape[1]} test outcomes per seed, other {o_out.shape[1]}: not the same test split"
        )
    if n_seeds == 1 and not examples:
        return Difference(diff, NAN, NAN, NAN, NAN, NAN, seeds=1, examples=False)

    rng = np.random.default_rng(rng_seed)
    # Seed draws as counts: seed_counts[b, s] = times seed s was drawn in replicate b.
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    seed_counts = (seed_draws[:, :, None] == np.arange(n_seeds)).sum(axis=1)
    if not examples:
        reps = seed_counts @ d / n_seeds
    else:
        # The statistic is linear in the per-example differences dd[s, i] in {-1, 0, 1}:
        # replicate b is sum_s seed_counts[b, s] * sums[b, s] / (S * N), where sums[b, s]
        # is the sum of dd[s, .] over the drawn examples.  All integers, so exact: a
        # replicate of identical data is exactly 0.
        dd = o_out.astype(np.int64) - b_out
        sums = _sums_over_draws(dd, n_boot, rng)
        reps = (seed_counts * sums).sum(axis=1) / (n_seeds * dd.shape[1])
    tail = (1.0 - level) / 2.0
    low, high, eq_low, eq_high = np.quantile(reps, [tail, 1.0 - tail, alpha, 1.0 - alpha])
    at_most, at_least = int((reps <= 0).sum()), int((reps >= 0).sum())
    p = min(1.0, 2.0 * (min(at_most, at_least) + 1) / (n_boot + 1))
    return Difference(diff, float(low), float(high), float(eq_low), float(eq_high), p, seeds=n_seeds, examples=examples)


def holm(pvalues: Mapping[K, float | None]) -> dict[K, float]:
    """Holm-Bonferroni adjusted p-values, in the order of `pvalues`.

    With the m non-nan p-values sorted p_(1) <= ... <= p_(m), the adjusted
    p_(i) = max over j <= i of min(1, (m - j + 1) * p_(j)): monotone in p, capped at 1.
    Rejecting where the adjusted p < alpha is Holm's step-down procedure, which keeps
    the chance of any false rejection in the family at most alpha.  nan (or None) stays
    nan and does not count in m.
    """
    valid = sorted(
        ((float(p), k) for k, p in pvalues.items() if p is not None and not math.isnan(float(p))),
        key=lambda item: item[0],
    )
    m = len(valid)
    out = {k: NAN for k in pvalues}
    running = 0.0
    for i, (p, k) in enumerate(valid):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


@dataclass(frozen=True)
class Verdict:
    """A row against the best row: `verdict` is WORSE, SAME, INCONCLUSIVE or BETTER."""

    verdict: str
    difference: Difference
    p_holm: float


def compare_with_best(
    best_key: K,
    samples: Mapping[K, Sample],
    *,
    higher_is_better: bool = True,
    margin: float = 0.01,
    alpha: float = 0.05,
    n_boot: int = 2000,
    rng_seed: int = 0,
) -> dict[K, Verdict]:
    """A verdict for every row of `samples` except `best_key`, against the best row.

    Each row gets `paired_bootstrap(samples[best_key], row)`.  The family for Holm's
    correction is these k-1 comparisons with the best row (rows whose p is nan do not
    count).  Then, with "worse" meaning worse in the metric's direction:
    WORSE when p_holm < alpha and the row is worse; BETTER when p_holm < alpha and the
    row is better (possible, as the best row is chosen on validation scores); else SAME
    ("≈") when the 1 - 2*alpha interval lies inside [-margin, +margin] (margin in score
    units: 0.01 = 1 point of accuracy); else INCONCLUSIVE.  Every comparison uses the
    same rng_seed, so a row's interval does not depend on which other rows are present.
    """
    if best_key not in samples:
        raise KeyError(f"best row {best_key!r} is not among the samples")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    best = samples[best_key]
    diffs = {
        k: paired_bootstrap(best, s, n_boot=n_boot, rng_seed=rng_seed, alpha=alpha)
        for k, s in samples.items()
        if k != best_key
    }
    adjusted = holm({k: d.p for k, d in diffs.items()})
    out = {}
    for k, d in diffs.items():
        p = adjusted[k]
        if p < alpha:  # False for nan
            worse = d.diff < 0 if higher_is_better else d.diff > 0
            verdict = WORSE if worse else BETTER
        elif -margin <= d.eq_low and d.eq_high <= margin:  # False for nan
            verdict = SAME
        else:
            verdict = INCONCLUSIVE
        out[k] = Verdict(verdict=verdict, difference=d, p_holm=p)
    return out


def tiers(
    order: Sequence[K],
    samples: Mapping[K, Sample],
    *,
    higher_is_better: bool = True,
    margin: float = 0.01,
    alpha: float = 0.05,
    n_boot: int = 2000,
    rng_seed: int = 0,
) -> dict[K, int]:
    """Groups of rows that cannot be told apart, numbered 1, 2, ... best first.

    `order`: the rows best-first by validation score.  Tier 1 is the first row plus
    every remaining row whose verdict against it (`compare_with_best`, Holm over the
    rows still in play) is not WORSE; those are removed, the first remaining row in
    `order` becomes the next reference, and so on.  Rows whose sample has no finite
    score get the last tier + 1.  A tier is "not shown worse than its first row", not
    "equal": a noisy row lands in the first tier whose reference it cannot be shown
    worse than.  Returns key -> tier, in the order of `order`.
    """
    missing = [k for k in order if k not in samples]
    if missing:
        raise KeyError(f"rows without a sample: {missing!r}")
    remaining = [k for k in order if any(_finite_score(v) for v in samples[k].scores.values())]
    tier_of: dict[K, int] = {}
    tier = 0
    while remaining:
        tier += 1
        ref = remaining[0]
        verdicts = compare_with_best(
            ref,
            {k: samples[k] for k in remaining},
            higher_is_better=higher_is_better,
            margin=margin,
            alpha=alpha,
            n_boot=n_boot,
            rng_seed=rng_seed,
        )
        joined = [ref] + [k for k in remaining[1:] if verdicts[k].verdict != WORSE]
        for k in joined:
            tier_of[k] = tier
        remaining = [k for k in remaining if k not in tier_of]
    return {k: tier_of.get(k, tier + 1) for k in order}


def bootstrap_interval(sample: Sample, *, level: float = 0.95, n_boot: int = 2000, rng_seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of one row's mean test score, resampled as `paired_bootstrap` does.

    A replicate draws the seeds with a finite score with replacement; when the sample has
    outcomes for every one of them it also draws ONE set of test-example indices with
    replacement, shared by every drawn seed, and recomputes each drawn seed's score as
    the mean of its outcomes over those indices.  The replicate is the mean over the
    drawn seeds; the interval is the `level` percentile interval of `n_boot` replicates.
    So it covers the seed-to-seed spread and the sampling noise of the test split (400
    examples at 88% accuracy: about +-0.03 on their own), which a t-interval over the
    seeds' scores does not see.  The limits of `paired_bootstrap` apply: with few seeds
    and no outcomes the seed level is rough (3 seeds have 10 distinct draws).
    (nan, nan) with no finite seed, or one seed and no outcomes (nothing to resample).
    Reproducible: the draws come from numpy's default_rng(rng_seed).
    """
    import numpy as np

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    seeds = sorted(s for s, v in sample.scores.items() if _finite_score(v))
    n_seeds = len(seeds)
    if n_seeds == 0:
        return NAN, NAN
    outcomes = _outcome_matrix(sample, seeds)
    if n_seeds == 1 and outcomes is None:
        return NAN, NAN
    rng = np.random.default_rng(rng_seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    seed_counts = (seed_draws[:, :, None] == np.arange(n_seeds)).sum(axis=1)
    if outcomes is None:
        reps = seed_counts @ np.array([float(sample.scores[s]) for s in seeds]) / n_seeds
    else:
        # sums[b, s]: examples seed s got right among replicate b's draw (0/1 fit _sums_over_draws' digits)
        sums = _sums_over_draws(outcomes.astype(np.int64), n_boot, rng)
        reps = (seed_counts * sums).sum(axis=1) / (n_seeds * outcomes.shape[1])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return float(low), float(high)
