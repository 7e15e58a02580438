"""The verdict rule: paired differences, Student-t 95% intervals, trends on per-seed slopes."""
from __future__ import annotations

import math
import random

import pytest

from kdkit.experiments.runs import Comparison, Interval, Summary, Trend, t_quantile_975


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 41)) + [60, 120, 1000]:
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1.5e-3)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        t_quantile_975(0)


def test_interval_is_the_textbook_one():
    values = [0.01, 0.03, 0.02, 0.04, 0.00]
    interval = Interval.of(values)
    half = 2.776 * 0.0158113883 / math.sqrt(5)      # t(0.975, 4) * sample std / sqrt(n)
    assert interval.mean == pytest.approx(0.02)
    assert (interval.low, interval.high) == pytest.approx((0.02 - half, 0.02 + half))
    assert interval.points() == "+2.0 [+0.0, +4.0]"


def summary(values, seeds=None):
    return Summary(tuple(values), None if seeds is None else tuple(seeds))


def test_pairing_sees_a_small_consistent_gain_that_the_spread_would_hide():
    control = [0.60, 0.70, 0.65, 0.55, 0.75]          # a large spread between seeds...
    treatment = [c + 0.01 for c in control]            # ...and the same +1 point on every seed
    comparison = Comparison("t beats c", summary(treatment), summary(control))
    assert comparison.verdict == "reproduced"
    assert comparison.gap == pytest.approx(0.01)
    assert "paired difference +1.0 [+1.0, +1.0] points (95% CI, Student t, n = 5) -> reproduced" \
        in comparison.report()


def test_the_three_verdicts_and_the_papers_direction():
    base = [0.5, 0.6, 0.7, 0.55, 0.65]
    worse = [b - d for b, d in zip(base, [0.02, 0.03, 0.01, 0.02, 0.025])]
    mixed = [b + d for b, d in zip(base, [0.02, -0.03, 0.01, -0.02, 0.015])]
    assert Comparison("", summary(worse), summary(base)).verdict == "contradicted"
    assert Comparison("", summary(mixed), summary(base)).verdict == "inconclusive"
    # The paper expects the treatment to be *lower* (e.g. a student stays below its teacher).
    assert Comparison("", summary(worse), summary(base), expected_sign=-1).verdict == "reproduced"


def test_a_comparison_refuses_unpaired_arms():
    with pytest.raises(ValueError, match="same seeds"):
        Comparison("", summary([0.5, 0.6, 0.7]), summary([0.5, 0.6]))
    with pytest.raises(ValueError, match="different seeds"):
        Comparison("", summary([0.5, 0.6], seeds=[0, 1]), summary([0.5, 0.6], seeds=[1, 2]))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        Comparison("", summary([0.5]), summary([0.6]))


def test_a_trend_is_decided_on_per_seed_slopes():
    rng = random.Random(0)
    seeds = range(6)
    offsets = [rng.uniform(-0.1, 0.1) for _ in seeds]    # seeds differ a lot in level...
    xs = (1000, 2000, 4000, 8000)
    rising = tuple(summary([0.6 + o + 0.02 * i + rng.uniform(-0.003, 0.003) for o in offsets])
                   for i, _x in enumerate(xs))           # ...but each rises 2 points per doubling
    trend = Trend("more data helps", xs, rising)
    assert trend.verdict == "reproduced"
    assert trend.slope.mean == pytest.approx(0.02, abs=0.003)
    flat = tuple(summary([0.6 + o + rng.uniform(-0.01, 0.01) for o in offsets]) for _x in xs)
    assert Trend("more data helps", xs, flat).verdict == "inconclusive"
    assert Trend("falls", xs, rising, expected_sign=-1).verdict == "contradicted"
    assert "per doubling" in trend.report()


def test_within_one_step_allows_a_verdict_to_move_to_its_neighbour_never_across():
    from kdkit.experiments.runs import within_one_step

    assert within_one_step("reproduced", "reproduced")
    assert within_one_step("inconclusive", "reproduced") and within_one_step("contradicted", "inconclusive")
    assert not within_one_step("contradicted", "reproduced")
    assert within_one_step("lower", "no clear difference") and not within_one_step("lower", "higher")


def test_the_cheapest_recipe_within_tolerance_of_the_best_is_chosen():
    from kdkit.experiments.runs import Summary, cheapest_good_recipe

    scored = [({"epochs": 40}, Summary((0.90, 0.92))), ({"epochs": 20}, Summary((0.905, 0.91))),
              ({"epochs": 10}, Summary((0.80, 0.82)))]
    assert cheapest_good_recipe(scored) == {"epochs": 20}
    assert cheapest_good_recipe(scored, tolerance=0.0) == {"epochs": 40}
