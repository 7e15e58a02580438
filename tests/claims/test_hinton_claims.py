"""Notebook 02's claims (Hinton et al. 2015), re-run with the notebook's functions, settings and seeds.

Each test asserts the verdict the notebook's "Did we reproduce it?" cell prints, including
the one that does not reproduce at this scale (C2.5b): the test records what really
happens, it was not tuned until it passed. The verdicts were checked with two teachers
(trained with 1 and with 2 CPU threads: bitwise different weights); whether the chosen T
also beats T = 1 on *test* differed between them, so neither the notebook nor this test
gives that comparison a verdict.
"""
from __future__ import annotations

import pytest

from kdkit.experiments import hinton, mnist1d, start_here
from kdkit.storage import CACHE_ENV_VAR

pytestmark = pytest.mark.claims

EXPECTED = {
    "C2.1 KD student beats the label-only student": "reproduced",
    "C2.2 best T on validation is above 1": "reproduced",
    "C2.3 without T², soft gradients fall like 1/T²": "reproduced",
    "C2.4 at high T, KD ≈ MSE on centred logits": "reproduced",
    "C2.5 soft targets beat hard labels on 5% of the data": "reproduced",
    "C2.5b ... and close most of the gap to full data":
        "not reproduced (soft targets close less than half of the gap)",
    "C2.6 omitted digit 3 recognised after a bias correction": "reproduced",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every experiment of the notebook, with its arguments, once (teacher in a private cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.mktemp("claims-cache")))
        teacher = mnist1d.teacher(seed=0)
        data = mnist1d.data_with_teacher(seed=0)
        kd_vs_labels = start_here.kd_versus_labels(data, seeds=range(5), T=hinton.DEFAULT_T,
                                                   alpha=hinton.DEFAULT_ALPHA)
        t_sweep = hinton.temperature_sweep(data, temperatures=hinton.SWEEP_TEMPERATURES,
                                           alpha=hinton.DEFAULT_ALPHA, seeds=hinton.SWEEP_SEEDS)
        small = hinton.small_data(data, fraction=hinton.SMALL_DATA_FRACTION, T=hinton.DEFAULT_T,
                                  seeds=range(5), full_hard=kd_vs_labels.control)
        omitted = hinton.omitted_class(data, omitted=hinton.OMITTED_CLASS, T=hinton.DEFAULT_T,
                                       alpha=hinton.DEFAULT_ALPHA, seeds=range(5))
    return {"teacher": teacher, "kd_vs_labels": kd_vs_labels, "t_sweep": t_sweep, "small": small,
            "omitted": omitted}


@pytest.fixture(scope="module")
def verdicts(results):
    return hinton.verdicts(results["kd_vs_labels"], results["t_sweep"], results["small"], results["omitted"])


def test_the_notebooks_verdicts(verdicts):
    assert verdicts == EXPECTED


def test_c21_kd_beats_labels_and_stays_below_the_teacher(results):
    comparison = results["kd_vs_labels"]
    assert comparison.verdict == "reproduced", comparison.report()
    assert comparison.treatment.mean < results["teacher"].metrics["test_acc"]


def test_c22_best_temperature_on_validation_is_above_one(results):
    sweep = results["t_sweep"]
    assert sweep.best > 1, sweep.table()
    assert hinton.best_temperature_above_one(sweep).reproduced, sweep.table()


def test_c25_soft_targets_beat_hard_labels_with_little_data_but_close_little_of_the_gap(results):
    small = results["small"]
    assert small.comparison.verdict == "reproduced", small.table()
    assert 0 < small.gap_closed < 0.5, small.table()
    assert all(run.history.last["train_acc"] == 1.0 for run in small.hard), "hard labels overfit"


def test_c26_omitted_digit_comes_from_the_soft_targets(results):
    omitted = results["omitted"]
    assert omitted.comparison.verdict == "reproduced", omitted.table()
    assert omitted.versus_labels.verdict == "reproduced", omitted.table()
    assert omitted.summary("kd", "class_acc_after").mean > 0.5, omitted.table()
    assert omitted.summary("labels_only", "class_acc_after").mean == 0.0, omitted.table()
