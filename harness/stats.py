"""The statistics the leaderboard prints: seed summaries, Welch's t-test and ranks.

A leaderboard row is the mean over a configuration's seeds.  Readers also need to know
how sure that mean is and whether the difference from the best row is more than seed
noise, and, across several tasks, which configuration is best overall:

- `summarize`: mean, sample sd and the Student-t confidence interval of the mean.
- `welch` / `same_as_best`: Welch's unequal-variance t-test, and the yes/no question
  "can this row be told apart from the best one?" built on it.
- `average_ranks` / `mean_ranks`: rank configurations within a task (ties share their
  average rank), then average each configuration's ranks over tasks.

Only the Student t distribution itself comes from scipy (`scipy.stats.t.ppf` for the
interval's quantile, `scipy.stats.t.sf` for the p-value); every other piece of
arithmetic (means, sd, interval half-width, the Welch statistic and its
Welch-Satterthwaite degrees of freedom, ranks) is written out here.  That way the
tests can check it against scipy's higher-level functions (`t.interval`,
`ttest_ind(equal_var=False)`, `rankdata`) as an independent implementation rather
than against itself.  scipy is imported inside the functions that need it, so
importing this module stays cheap.

Values that are NaN, infinite or None (a diverged or missing seed) are dropped
everywhere: they are not measurements of the configuration's score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

NAN = float("nan")


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


@dataclass(frozen=True)
class Welch:
    """Result of Welch's t-test: statistic, Welch-Satterthwaite df, two-sided p."""

    t: float
    df: float
    p: float


def welch(a: Iterable[float | None], b: Iterable[float | None]) -> Welch:
    """Welch's unequal-variance t-test of mean(a) == mean(b), two-sided.

    NaN/inf/None values are dropped.  If either sample then has fewer than two values
    every field is nan (there is no variance to test with).

    t = (mean_a - mean_b) / sqrt(va/na + vb/nb), with df from Welch-Satterthwaite:
    (va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1)).

    Both variances zero (e.g. every seed gave the same accuracy) is a convention of
    ours, where scipy returns nan: with no noise at all, different means are certainly
    different (t = +-inf, p = 0.0) and equal means are certainly the same (t = 0,
    p = 1.0).  df is nan there, as the Welch-Satterthwaite formula is 0/0.
    """
    xa, xb = _finite(a), _finite(b)
    na, nb = len(xa), len(xb)
    if na < 2 or nb < 2:
        return Welch(t=NAN, df=NAN, p=NAN)
    ma, mb = _mean(xa), _mean(xb)
    # Squared standard errors of the two means.
    sa, sb = _var(xa, ma) / na, _var(xb, mb) / nb
    diff = ma - mb
    if sa == 0.0 and sb == 0.0:
        if diff == 0.0:
            return Welch(t=0.0, df=NAN, p=1.0)
        return Welch(t=math.copysign(math.inf, diff), df=NAN, p=0.0)
    t_stat = diff / math.sqrt(sa + sb)
    df = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    from scipy.stats import t

    # Two-sided: the probability of a |t| at least this large under the null.
    p = float(2.0 * t.sf(abs(t_stat), df))
    return Welch(t=t_stat, df=df, p=min(p, 1.0))


def same_as_best(best: Iterable[float | None], other: Iterable[float | None], alpha: float = 0.05) -> bool | None:
    """Whether `other` is statistically indistinguishable from `best`.

    True when Welch's test cannot tell them apart at level alpha (p >= alpha), False
    when it can (p < alpha), None when it cannot be tested (fewer than two finite
    values on either side).  "Cannot tell apart" is not "equal": with few seeds, large
    real differences also come out True.
    """
    p = welch(best, other).p
    if math.isnan(p):
        return None
    return p >= alpha


def average_ranks(scores: Mapping[str, float], higher_is_better: bool) -> dict[str, float]:
    """Rank 1 = best; tied scores share the average of the ranks they span.

    Same convention as scipy.stats.rankdata(method="average").  Labels whose score is
    NaN (or None/inf) get no rank and are absent from the result; the others keep the
    order of `scores`.
    """
    ranked = [(label, float(s)) for label, s in scores.items() if s is not None and math.isfinite(float(s))]
    # Best first; sort is stable so equal scores stay adjacent in input order.
    ordered = sorted(ranked, key=lambda item: -item[1] if higher_is_better else item[1])
    rank_of: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][1] == ordered[i][1]:
            j += 1
        # Positions i..j (0-based) are tied: they share the mean of ranks i+1..j+1.
        shared = (i + 1 + j + 1) / 2.0
        for label, _ in ordered[i : j + 1]:
            rank_of[label] = shared
        i = j + 1
    return {label: rank_of[label] for label, _ in ranked}


def mean_ranks(
    per_task: Mapping[str, Mapping[str, float]], higher_by_task: Mapping[str, bool]
) -> dict[str, tuple[float, int]]:
    """Each configuration's average rank over tasks.

    per_task: task -> {config label -> score}; higher_by_task: task -> whether a higher
    score is better there.  Returns config -> (mean of its ranks over the tasks where
    it has one, number of such tasks).  A config that never got a rank (only NaN
    scores) is reported as (nan, 0) rather than dropped, so that the leaderboard can
    still list it.  Configs appear in order of first appearance.  Note that a mean
    over fewer tasks is not comparable one-to-one with a mean over all of them; the
    count is returned so that the reader can see it.
    """
    ranks: dict[str, list[float]] = {}
    for task, scores in per_task.items():
        for label in scores:
            ranks.setdefault(label, [])
        for label, r in average_ranks(scores, higher_by_task[task]).items():
            ranks[label].append(r)
    return {label: (_mean(rs), len(rs)) for label, rs in ranks.items()}
