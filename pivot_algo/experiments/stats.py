"""Intervals and tests for the experiments, one copy (numpy only, no scipy).

Which one to use:
- a proportion of independent 0/1 outcomes (n items, k right): `wilson`;
- two models on the same 0/1 items: `mcnemar_exact` on the discordant pairs;
- the mean of independent values (items, or per-state means): `bootstrap_mean`;
- values that come in groups which are not independent (the states of one trajectory, the samples of
  one state): `cluster_bootstrap`, which resamples whole groups;
- a [seeds, tasks] matrix (every seed evaluated on the same tasks): `bootstrap_two_level`;
- a few independent runs (seeds), one number each: `t_interval`;
- method a minus method b on the same seeds and tasks: `paired_over_seeds`.

All intervals are two-sided; the bootstraps are 95% percentile intervals with a fixed generator seed,
so a result is reproducible to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_mean", "bootstrap_two_level", "cluster_bootstrap", "half_width", "mcnemar_exact",
           "paired_over_seeds", "regularized_beta", "sign", "t_interval", "t_quantile", "wilson"]

_PERCENTILES = (2.5, 97.5)  # the bootstraps' 95% percentile interval


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% at the default z) of the proportion successes / n.

    For a share of independent 0/1 outcomes (items answered right, turns rewarded 0); unlike the
    normal interval it stays inside [0, 1] and is sensible at 0 and n successes. (nan, nan) when n == 0.
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Exact two-sided McNemar test of paired 0/1 outcomes (a[i], b[i] on the same item i).

    Only the discordant pairs count: under "a and b are equally good" the a-only pairs are
    binomial(a_only + b_only, 1/2); `p` is twice the smaller tail (capped at 1; 1.0 without discordant
    pairs). Use it for two models on the same items; for unpaired samples use two Wilson intervals.
    """
    a_only = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    b_only = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    n = a_only + b_only
    tail = sum(math.comb(n, i) for i in range(min(a_only, b_only) + 1)) / 2 ** n if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": min(1.0, 2 * tail)}


def bootstrap_mean(values: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of independent `values` (resampled with replacement).

    The unit resampled is one value (an item, or a state's mean reward), so the values must be
    independent; when they come in correlated groups use `cluster_bootstrap`. (nan, nan) when empty.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan)
    idx = np.random.default_rng(seed).integers(0, arr.size, size=(reps, arr.size))
    means = arr[idx].mean(axis=1)
    return (float(np.percentile(means, _PERCENTILES[0])), float(np.percentile(means, _PERCENTILES[1])))


def bootstrap_two_level(matrix: Any, reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile interval of a [seeds, tasks] matrix, resampling seeds and tasks.

    Each replicate draws seeds (rows) and tasks (columns) with replacement, so the interval carries
    both seed-to-seed and task-to-task variation. Use it when every seed is evaluated on the same
    tasks; with one seed it is the bootstrap over tasks. (nan, nan, nan) when the matrix is empty.
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"bootstrap_two_level wants a [seeds, tasks] matrix, got shape {m.shape}")
    if m.size == 0:
        return (math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    s, t = m.shape
    means = np.empty(reps)
    for i in range(reps):
        rows = rng.integers(0, s, s)
        cols = rng.integers(0, t, t)
        means[i] = m[np.ix_(rows, cols)].mean()
    lo, hi = np.percentile(means, _PERCENTILES)
    return float(m.mean()), float(lo), float(hi)


def cluster_bootstrap(values: Sequence[float], clusters: Sequence[Any], reps: int = 2000,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean of `values` and its 95% percentile interval, resampling whole clusters with replacement.

    `clusters[i]` names the group of `values[i]` (e.g. the trajectory a state belongs to, the state a
    sample belongs to). Values of one group are correlated, so the group is the unit resampled; each
    replicate's mean is the pooled mean of the values of the drawn groups (a large group weighs more,
    as in the point estimate). With one value per cluster it is `bootstrap_mean`'s interval in
    distribution. (nan, nan, nan) when empty.
    """
    vals = np.asarray(values, dtype=float)
    if len(clusters) != vals.size:
        raise ValueError(f"cluster_bootstrap: {vals.size} values but {len(clusters)} cluster labels")
    if vals.size == 0:
        return (math.nan, math.nan, math.nan)
    index: dict[Any, int] = {}
    labels = np.array([index.setdefault(c, len(index)) for c in clusters])
    sums = np.bincount(labels, weights=vals)
    counts = np.bincount(labels).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(index), size=(reps, len(index)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.percentile(means, _PERCENTILES)
    return float(vals.mean()), float(lo), float(hi)


# ----------------------------------------------------------------------------- Student t

def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0):
        raise ValueError(f"regularized_beta needs a, b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (t_quantile(0.975, 4) = 2.776...).

    P(|T| > t) = I_{df/(df+t^2)}(df/2, 1/2), solved for t by bisection on the incomplete beta. Relative
    error against scipy: < 1e-13 for df <= 100, ~1e-9 at df = 1e7 (checked when written).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    if not df > 0:
        raise ValueError(f"t_quantile needs df > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    two_tail = 2.0 * (1.0 - p)
    lo, hi = 0.0, 1.0  # x = df / (df + t^2); I_x(df/2, 1/2) grows with x
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if regularized_beta(df / 2.0, 0.5, mid) < two_tail:
            lo = mid
        else:
            hi = mid
    x = 0.5 * (lo + hi)
    return math.sqrt(df * (1.0 - x) / x)


def t_interval(values: Sequence[float], conf: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval (coverage `conf`) of the mean of independent units, e.g. one number per seed.

    For a handful of independent runs, where a bootstrap over so few values is too narrow. Assumes the
    units are roughly normal. n == 1 -> (mean, nan, nan); n == 0 -> all nan.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if arr.size == 1:
        return (mean, math.nan, math.nan)
    half = t_quantile(0.5 + conf / 2.0, arr.size - 1) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return (mean, mean - half, mean + half)


# ----------------------------------------------------------------------------- paired differences

def sign(lo: float, hi: float) -> str:
    """Where an interval lies relative to 0: "above 0", "below 0" or "includes 0" (also when nan)."""
    return "above 0" if lo > 0 else "below 0" if hi < 0 else "includes 0"


def half_width(d: dict[str, Any]) -> float:
    """Half the width of the interval d["lo"], d["hi"] (nan when either is nan)."""
    return (float(d["hi"]) - float(d["lo"])) / 2.0


def paired_over_seeds(a: Any, b: Any, reps: int = 2000, seed: int = 0, conf: float = 0.95) -> dict[str, Any]:
    """a - b where both are [seeds, tasks] matrices of the same seeds and tasks (row i = seed i).

    - mean, lo, hi: mean difference and Student-t interval (coverage `conf`) over the per-seed mean
      differences -- seeds are the independent units (nan bounds with one seed);
    - boot_lo, boot_hi: 95% two-level bootstrap interval of the difference (seeds and tasks resampled;
      with one seed, the bootstrap over tasks);
    - discordant: share of (seed, task) pairs where a and b differ;
    - sign: "above 0" / "below 0" / "includes 0", from the t-interval when n_seeds >= 2, else from the
      bootstrap over tasks (which then says nothing about seed-to-seed variation); `sign_from` says which.
    """
    ma, mb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if ma.ndim != 2 or ma.shape != mb.shape:
        raise ValueError(f"paired_over_seeds wants two [seeds, tasks] matrices of one shape, got {ma.shape} and {mb.shape}")
    diff = ma - mb
    n_seeds, n_tasks = diff.shape
    _, lo, hi = t_interval(diff.mean(axis=1) if n_tasks else [], conf)
    mean, boot_lo, boot_hi = bootstrap_two_level(diff, reps, seed)
    by_t = n_seeds >= 2
    return {"mean": mean, "lo": lo, "hi": hi,
            "n_seeds": n_seeds, "n_tasks": n_tasks, "boot_lo": boot_lo, "boot_hi": boot_hi,
            "discordant": float(np.mean(diff != 0)) if diff.size else math.nan,
            "sign": sign(lo, hi) if by_t else sign(boot_lo, boot_hi),
            "sign_from": "t over seeds" if by_t else "bootstrap over tasks"}
