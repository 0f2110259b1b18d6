"""pivot_algo.experiments.stats against values known from tables and hand computation (scipy is not in
the venv; the t quantiles and McNemar p-values were also checked against scipy 1.17 when written)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pivot_algo.experiments.stats import (
    bootstrap_mean,
    bootstrap_two_level,
    cluster_bootstrap,
    half_width,
    mcnemar_exact,
    paired_over_seeds,
    regularized_beta,
    sign,
    t_interval,
    t_quantile,
    wilson,
)


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (0, 100, 0.0, 0.0370), (50, 100, 0.4038, 0.5962), (1, 10, 0.0179, 0.4042), (10, 10, 0.7225, 1.0)])
def test_wilson_known_intervals(k, n, lo, hi):
    assert wilson(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_empty_and_wider_z():
    assert all(math.isnan(x) for x in wilson(0, 0))
    lo95, hi95 = wilson(30, 100)
    lo99, hi99 = wilson(30, 100, z=2.576)
    assert lo99 < lo95 < 0.3 < hi95 < hi99


def test_mcnemar_exact_counts_only_discordant_pairs():
    a = [True] * 6 + [False] + [True] * 3 + [False] * 5
    b = [False] * 6 + [True] + [True] * 3 + [False] * 5
    assert mcnemar_exact(a, b) == {"a_only": 6, "b_only": 1, "p": pytest.approx(16 / 128)}  # 2 * (1 + 6) / 2^7
    assert mcnemar_exact([True] * 10, [False] * 10)["p"] == pytest.approx(2 / 1024)
    assert mcnemar_exact([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])["p"] == 1.0  # balanced: capped at 1
    assert mcnemar_exact([True, False], [True, False]) == {"a_only": 0, "b_only": 0, "p": 1.0}


def test_bootstrap_mean_interval_and_reproducibility():
    vals = list(range(100))  # mean 49.5, standard error 2.9: the 95% interval is about +-5.7
    lo, hi = bootstrap_mean(vals)
    assert 43.0 < lo < 45.0 and 54.0 < hi < 56.0
    assert bootstrap_mean(vals) == (lo, hi)
    assert bootstrap_mean(vals, seed=1) != (lo, hi)
    assert bootstrap_mean([0.25] * 7) == (0.25, 0.25)
    assert all(math.isnan(x) for x in bootstrap_mean([]))


def test_bootstrap_two_level_resamples_seeds_and_tasks():
    # Two seeds, tasks equal within a seed: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4.
    assert bootstrap_two_level([[0.0, 0.0], [1.0, 1.0]]) == (0.5, 0.0, 1.0)
    # One seed: only tasks vary, the interval is the bootstrap over tasks.
    mean, lo, hi = bootstrap_two_level([list(range(100))])
    assert mean == 49.5 and 43.0 < lo < 45.0 and 54.0 < hi < 56.0
    assert bootstrap_two_level(np.full((3, 4), 0.5)) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="seeds, tasks"):
        bootstrap_two_level([1.0, 2.0])


def test_cluster_bootstrap_resamples_whole_clusters():
    values = [0.0] * 10 + [1.0] * 20
    clusters = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    mean, lo, hi = cluster_bootstrap(values, clusters)
    assert mean == pytest.approx(2 / 3)
    assert (lo, hi) == (0.0, 1.0)  # three clusters: a replicate of only 'a' or only b/c is likely enough
    naive_lo, naive_hi = bootstrap_mean(values)
    assert hi - lo > 2 * (naive_hi - naive_lo)  # treating the 30 values as independent is far too narrow
    # Pooled mean of the drawn clusters: {A, A} -> 1, {A, B} -> 0.9, {B, B} -> 0.
    assert cluster_bootstrap([1.0] * 9 + [0.0], ["A"] * 9 + ["B"]) == (pytest.approx(0.9), 0.0, 1.0)
    # One big cluster of ones, nine single zeros: the pooled mean of a replicate that draws the big
    # cluster twice is 200/208; an unweighted mean of cluster means would stay near 0.2-0.4.
    mean, lo, hi = cluster_bootstrap([1.0] * 100 + [0.0] * 9, ["big"] * 100 + list(range(9)))
    assert mean == pytest.approx(100 / 109) and lo == 0.0 and hi > 0.95
    with pytest.raises(ValueError, match="cluster labels"):
        cluster_bootstrap([1.0, 2.0], ["a"])
    assert all(math.isnan(x) for x in cluster_bootstrap([], []))


def test_cluster_bootstrap_with_singleton_clusters_matches_plain_bootstrap():
    vals = np.random.default_rng(3).normal(size=200)
    _, lo, hi = cluster_bootstrap(vals, list(range(200)))
    plo, phi = bootstrap_mean(vals)
    assert lo == pytest.approx(plo, abs=0.03) and hi == pytest.approx(phi, abs=0.03)


@pytest.mark.parametrize(("df", "t"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262), (29, 2.045),
                                       (30, 2.042), (100, 1.984), (10**6, 1.960)])
def test_t_quantile_0975_matches_the_table(df, t):
    assert t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)


def test_t_quantile_other_levels_and_symmetry():
    assert t_quantile(0.995, 1) == pytest.approx(63.657, abs=1e-3)
    assert t_quantile(0.995, 9) == pytest.approx(3.250, abs=1e-3)
    assert t_quantile(0.95, 5) == pytest.approx(2.015, abs=1e-3)
    assert t_quantile(0.025, 9) == pytest.approx(-t_quantile(0.975, 9))
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.75, 1) == pytest.approx(1.0, abs=1e-12)  # Cauchy: tan(pi/4)
    assert t_quantile(0.975, 2) == pytest.approx(math.sqrt(2 / (0.05 * (2 - 0.05)) - 2), rel=1e-12)  # closed form, df 2
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError):
            t_quantile(bad, 3)


def test_regularized_beta_closed_forms():
    for x in (0.0, 0.1, 0.37, 0.9, 1.0):
        assert regularized_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert regularized_beta(2.5, 1, x) == pytest.approx(x ** 2.5, abs=1e-14)
    assert regularized_beta(7, 7, 0.5) == pytest.approx(0.5, abs=1e-14)


def test_t_interval():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0, 4.0])  # sd 1.291, t_{0.975,3} = 3.1824
    assert mean == 2.5 and (lo, hi) == pytest.approx((2.5 - 2.0543, 2.5 + 2.0543), abs=1e-4)
    _, lo99, hi99 = t_interval([1.0, 2.0, 3.0, 4.0], conf=0.99)
    assert lo99 < lo and hi99 > hi
    assert t_interval([0.3, 0.3, 0.3]) == (pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.3))
    one = t_interval([0.7])
    assert one[0] == 0.7 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(x) for x in t_interval([]))


def test_paired_over_seeds_uses_t_over_seed_means():
    a = np.array([[0.0, 0.2], [0.2, 0.2], [0.2, 0.4]])  # per-seed differences 0.1, 0.2, 0.3
    d = paired_over_seeds(a, np.zeros_like(a))
    half = 4.3027 * 0.1 / math.sqrt(3)
    assert d["mean"] == pytest.approx(0.2)
    assert (d["lo"], d["hi"]) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-4)
    assert d["n_seeds"] == 3 and d["n_tasks"] == 2
    assert d["discordant"] == pytest.approx(5 / 6)
    assert d["sign"] == "includes 0" and d["sign_from"] == "t over seeds"
    assert 0 < d["boot_lo"] < 0.2 < d["boot_hi"]  # the bootstrap excludes 0 here; the t-interval decides
    assert half_width(d) == pytest.approx(half, abs=1e-4)
    below = paired_over_seeds(np.zeros_like(a), a + 0.5)
    assert below["sign"] == "below 0" and below["hi"] < 0


def test_paired_over_seeds_with_one_seed_falls_back_to_the_task_bootstrap():
    a = np.array([[1.0] * 18 + [0.0] * 2])
    d = paired_over_seeds(a, np.zeros_like(a))
    assert math.isnan(d["lo"]) and math.isnan(d["hi"])
    assert d["sign_from"] == "bootstrap over tasks" and d["sign"] == "above 0" and d["boot_lo"] > 0
    with pytest.raises(ValueError, match="one shape"):
        paired_over_seeds(a, np.zeros((2, 20)))


def test_sign():
    assert [sign(0.1, 0.2), sign(-0.2, -0.1), sign(-0.1, 0.1), sign(math.nan, math.nan)] == [
        "above 0", "below 0", "includes 0", "includes 0"]
