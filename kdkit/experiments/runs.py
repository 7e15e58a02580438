"""Results of runs over several seeds, and the verdict on a paper's claim.

**The verdict rule.** A claim compares two arms run on the *same seeds*: for each seed both
arms start from the same initial weights and see the same batches, so the unit of analysis
is the per-seed difference ``treatment - control``. Its mean and a 95% confidence interval
(Student's t on the n differences, n - 1 degrees of freedom) decide:

* **reproduced** - the interval lies entirely on the paper's side of 0;
* **contradicted** - it lies entirely on the other side;
* **inconclusive** - it contains 0: these seeds cannot tell the arms apart.

Pairing removes the seed-to-seed spread that both arms share (a lucky initialisation helps
both), which is why a paired interval is much narrower than the two arms' standard
deviations suggest. A claim about a trend (more data, wider nets, higher T) is decided the
same way on each seed's trend: :class:`Trend` fits one least-squares slope per seed.

Accuracies are last-epoch test accuracies; every choice (temperature, epochs, ...) was
made beforehand on the validation split with other seeds.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from kdkit.train import History

# Two-sided 95% quantiles of Student's t, t_{0.975}(df), for df = 1..30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (two-sided 95%).

    Tabulated up to 30; beyond, the Cornish-Fisher expansion around the normal quantile,
    which is within 0.001 of the exact value there.
    """
    if df < 1:
        raise ValueError(f"a confidence interval needs at least 2 seeds (df >= 1), got df = {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


@dataclass
class RunResult:
    """One training run: its configuration, per-epoch history and final accuracies.

    For a model with several outputs (peers, exits), ``val_acc``/``test_acc`` are the
    headline (see :func:`kdkit.train.main_value`) and ``test_acc_per_output`` holds each
    output's test accuracy by name. ``test_metrics`` holds any other measurement on the test
    split (e.g. ``entropy/peer1``, a peer's mean predictive entropy).
    """
    config: dict
    history: History
    val_acc: float
    test_acc: float
    seconds: float
    test_acc_per_output: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """One metric over seeds: the values in seed order, with the seeds when known."""
    values: tuple[float, ...]
    seeds: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.seeds is not None and len(self.seeds) != len(self.values):
            raise ValueError(f"{len(self.values)} values but {len(self.seeds)} seeds")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}%"


def summarize(results: Iterable[RunResult], metric: str = "test_acc") -> Summary:
    """``metric`` of each run, in order, with the runs' seeds when their configs name them."""
    results = list(results)
    seeds = [r.config.get("seed") for r in results]
    known = all(isinstance(s, int) for s in seeds)
    return Summary(tuple(getattr(r, metric) for r in results), tuple(seeds) if known else None)


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% confidence interval (Student t), from ``n`` paired values."""
    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Interval":
        n = len(values)
        mean = statistics.fmean(values)
        half = t_quantile_975(n - 1) * statistics.stdev(values) / math.sqrt(n)
        return cls(mean, mean - half, mean + half, n)

    def verdict(self, expected_sign: int = +1) -> str:
        """reproduced / contradicted / inconclusive, for an effect expected with this sign."""
        low, high = (self.low, self.high) if expected_sign > 0 else (-self.high, -self.low)
        if low > 0:
            return "reproduced"
        if high < 0:
            return "contradicted"
        return "inconclusive"

    def points(self, scale: float = 100.0) -> str:
        """``+2.8 [+1.9, +3.7]`` in accuracy points (or ``scale`` = 1 for raw numbers)."""
        return f"{scale * self.mean:+.1f} [{scale * self.low:+.1f}, {scale * self.high:+.1f}]"


# A verdict or an outcome as a step on one scale: against the paper / no clear difference / for it.
_STEPS = {"contradicted": -1, "lower": -1, "inconclusive": 0, "no clear difference": 0,
          "reproduced": +1, "higher": +1}


def within_one_step(measured: str, expected: str) -> bool:
    """True when ``measured`` is ``expected``, or one step from it: reproduced and contradicted
    (or "higher" and "lower") are each one step from inconclusive and two from each other.

    What may change on another machine. The runs are bitwise repeatable on one machine, but
    another CPU (another instruction set, another path through the maths library) adds the
    same numbers in another order; training then drifts apart, and a claim whose interval
    starts near 0 can move one step. Two steps would mean the effect itself is not there.
    """
    return abs(_STEPS[measured] - _STEPS[expected]) <= 1


@dataclass(frozen=True)
class Comparison:
    """Does ``treatment`` beat ``control`` on the same seeds (e.g. KD student vs labels)?

    ``expected_sign`` is the paper's direction: +1 when the paper says treatment > control,
    -1 when it says treatment < control (e.g. "the mimic stays below its teacher").
    """
    claim: str
    treatment: Summary
    control: Summary
    notes: tuple[str, ...] = field(default=())
    expected_sign: int = +1

    def __post_init__(self):
        if len(self.treatment.values) != len(self.control.values):
            raise ValueError(f"a paired comparison needs both arms on the same seeds: "
                             f"{len(self.treatment.values)} vs {len(self.control.values)} runs")
        if None not in (self.treatment.seeds, self.control.seeds) and self.treatment.seeds != self.control.seeds:
            raise ValueError(f"the arms ran on different seeds: {self.treatment.seeds} vs {self.control.seeds}")
        if len(self.treatment.values) < 2:
            raise ValueError("a verdict needs at least 2 seeds per arm")
        if self.expected_sign not in (+1, -1):
            raise ValueError(f"expected_sign must be +1 or -1, got {self.expected_sign}")

    @property
    def differences(self) -> tuple[float, ...]:
        """Per-seed ``treatment - control``."""
        return tuple(t - c for t, c in zip(self.treatment.values, self.control.values))

    @property
    def difference(self) -> Interval:
        """Mean paired difference with its 95% confidence interval."""
        return Interval.of(self.differences)

    @property
    def gap(self) -> float:
        return self.difference.mean

    @property
    def verdict(self) -> str:
        return self.difference.verdict(self.expected_sign)

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"

    def report(self) -> str:
        """The claim, both arms as mean ± std, the paired difference [95% CI], n, the verdict."""
        return (f"{self.claim}: {self.treatment} vs {self.control}; paired difference "
                f"{self.difference.points()} points (95% CI, Student t, n = {self.difference.n}) "
                f"-> {self.verdict}")


@dataclass(frozen=True)
class Trend:
    """Does a metric rise (or fall) with a setting? Decided on the per-seed slopes.

    ``values[i]`` is a Summary over the same seeds at setting ``xs[i]``. For each seed a
    least-squares line is fitted through its values against ``x`` (``log2(x)`` with
    ``log_x``, for settings that double: sizes, widths, temperatures); the verdict is that
    of the mean slope's 95% confidence interval, in the paper's direction ``expected_sign``.
    """
    claim: str
    xs: tuple[float, ...]
    values: tuple[Summary, ...]
    log_x: bool = True
    expected_sign: int = +1

    def __post_init__(self):
        if len(self.xs) < 2 or len(self.xs) != len(self.values):
            raise ValueError("a trend needs at least two settings, each with a Summary over seeds")
        if len({len(v.values) for v in self.values}) != 1:
            raise ValueError("every setting of a trend must be run on the same seeds")

    @property
    def slopes(self) -> tuple[float, ...]:
        """One least-squares slope per seed (accuracy per doubling with ``log_x``)."""
        xs = [math.log2(x) if self.log_x else x for x in self.xs]
        centre = statistics.fmean(xs)
        spread = sum((x - centre) ** 2 for x in xs)
        per_seed = zip(*(v.values for v in self.values))
        return tuple(sum((x - centre) * y for x, y in zip(xs, ys)) / spread for ys in per_seed)

    @property
    def slope(self) -> Interval:
        return Interval.of(self.slopes)

    @property
    def verdict(self) -> str:
        return self.slope.verdict(self.expected_sign)

    @property
    def reproduced(self) -> bool:
        return self.verdict == "reproduced"

    def report(self) -> str:
        unit = "per doubling" if self.log_x else "per unit"
        means = ", ".join(f"{x:g}: {100 * v.mean:.1f}%" for x, v in zip(self.xs, self.values))
        return (f"{self.claim}: {means}; slope {self.slope.points()} points {unit} "
                f"(95% CI, Student t, n = {self.slope.n}) -> {self.verdict}")


def stated_verdict(key: str, comparison: Comparison | Trend, *, robust: Sequence[str],
                   on_the_edge: dict[str, str], reporting: Sequence[int], check: Sequence[int]) -> str:
    """The verdict a notebook states for claim ``key``: its category on the ``reporting`` seeds
    if that category also held, clearly, on the ``check`` seeds (``key`` in ``robust``), else
    "inconclusive" with the reason (``on_the_edge[key]``, or "not on <check seeds>")."""
    if comparison.verdict == "inconclusive" or key in robust:
        return comparison.verdict
    why = on_the_edge.get(key, f"not on {check[0]}-{check[-1]}")
    return f"inconclusive ({comparison.verdict} on seeds {reporting[0]}-{reporting[-1]}, {why})"


def claims_on_two_seed_sets(compute_claims, verdict_table, *, reporting: Sequence[int], check: Sequence[int],
                            seeds: int) -> list[str]:
    """Report lines of every claim on ``seeds`` reporting seeds and ``seeds`` check seeds
    (``compute_claims(seeds=...)`` -> verdicts, ``verdict_table(verdicts)`` -> text), for a
    notebook's ``reproduce``."""
    lines = []
    for label, start in (("reporting", reporting[0]), ("check", check[0])):
        chosen = tuple(range(start, start + seeds))
        lines.append(f"Claims on the {label} seeds {chosen[0]}-{chosen[-1]} (test, last epoch):")
        lines += ["  " + row for row in verdict_table(compute_claims(seeds=chosen)).splitlines()]
    return lines


def validation_score(runs: Sequence[RunResult]) -> Summary:
    """Mean last-epoch validation accuracy over the runs (the tuning criterion), with their seeds."""
    return Summary(tuple(r.val_acc for r in runs), tuple(r.config["seed"] for r in runs))


def cheapest_good_recipe(scored: Sequence[tuple[dict, Summary]], *, tolerance: float = 0.005) -> dict:
    """Of the recipes (``{"epochs": ..., ...}``, best validation mean first) within ``tolerance``
    of the best, the one with the fewest epochs (then the best mean): notebooks must run in
    seconds, and a recipe that costs five times more for 0.2 points is not the honest default."""
    best = scored[0][1].mean
    near = [(recipe, summary) for recipe, summary in scored if summary.mean >= best - tolerance]
    return min(near, key=lambda pair: (pair[0]["epochs"], -pair[1].mean))[0]
