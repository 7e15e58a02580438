"""Notebook 01's claims (Ba & Caruana 2014), computed exactly as the notebook computes them.

Same functions, same reporting seeds (``bc.REPORTING_SEEDS``, disjoint from the tuning seeds),
and the notebooks' result cache: whichever of this test and the notebook (under nbval) runs
first trains the students, the other reads them. Each test asserts the verdict category the
paired 95% intervals actually give on these seeds, and prints the interval when it fails.
The verdicts were also re-checked on a second disjoint seed set (``bc.CHECK_SEEDS``), where
none of them changed category.
"""
from __future__ import annotations

import pytest

from kdkit.experiments import ba_caruana as bc
from kdkit.experiments.runs import within_one_step
from kdkit.storage import CACHE_ENV_VAR

pytestmark = pytest.mark.claims

REPRODUCED, CONTRADICTED = "reproduced", "contradicted"


@pytest.fixture(scope="module")
def results(notebook_cache):
    """The teachers, the transfer set and every run of the notebook (one torch thread, as in
    the notebook: tests/conftest.py sets it for the whole session)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, notebook_cache)
        study = bc.build_study()
        claims = bc.all_comparisons(study)   # the notebook's "Did we reproduce it?" cell
        return study, claims


def _claim(results, prefix: str):
    _, claims = results
    matches = [c for c in claims if c.claim.startswith(prefix)]
    assert len(matches) == 1, f"expected one claim starting with {prefix!r}, got {[c.claim for c in claims]}"
    return matches[0]


def _assert_verdict(results, prefix: str, expected: str):
    claim = _claim(results, prefix)
    assert within_one_step(claim.verdict, expected), claim.report()


def test_the_teachers_are_strong_and_the_ensemble_is_stronger(results):
    study, _ = results
    assert study.teachers["cnn"].teacher_test_acc > 0.85
    assert study.teachers["ensemble"].teacher_test_acc > study.teachers["cnn"].teacher_test_acc


def test_verdicts_use_the_reporting_seeds_with_at_least_eight_per_arm(results):
    _, claims = results
    for claim in claims:
        values = claim.values[0] if isinstance(claim, bc.Trend) else claim.treatment
        assert values.seeds == bc.REPORTING_SEEDS, claim.claim
    assert not set(bc.REPORTING_SEEDS) & set(bc.TUNING_SEEDS)
    assert len(bc.REPORTING_SEEDS) >= 8


def test_c1_1_mimic_beats_labels_with_and_without_a_transfer_set(results):
    _assert_verdict(results, "C1.1 L2 mimic (the labelled inputs only)", REPRODUCED)
    _assert_verdict(results, "C1.1 L2 mimic (+ 20,000", REPRODUCED)


def test_c1_2_more_transfer_data_helps_at_equal_epochs(results):
    _assert_verdict(results, "C1.2 more transfer inputs", REPRODUCED)
    _assert_verdict(results, "C1.2 50,000 transfer inputs beat 20,000", REPRODUCED)


def test_c1_3_mimic_gains_more_from_width_than_the_label_net(results):
    _assert_verdict(results, "C1.3", REPRODUCED)


def test_c1_4_ensemble_teacher_gives_a_better_mimic(results):
    _assert_verdict(results, "C1.4", REPRODUCED)


def test_c1_5_soft_cross_entropy_beats_l2_on_logits_here(results):
    _assert_verdict(results, "C1.5", CONTRADICTED)


def test_honest_limit_the_best_student_picked_on_validation_stays_below_the_cnn(results):
    _assert_verdict(results, "Limit", REPRODUCED)
    limit = _claim(results, "Limit")
    assert limit.expected_sign == -1
    assert limit.difference.high < -0.05, limit.report()


def test_the_notebook_prints_exactly_these_verdicts(results):
    _, claims = results
    assert [c.verdict for c in claims] == [REPRODUCED, REPRODUCED, REPRODUCED, REPRODUCED, REPRODUCED,
                                           REPRODUCED, CONTRADICTED, REPRODUCED], \
        "\n".join(c.report() for c in claims)
