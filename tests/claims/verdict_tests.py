"""The tests every notebook's claims file shares, written once.

``verdict_tests(experiment, expected)`` returns four test functions for an experiments module
(``kdkit.experiments.<notebook>``: ``ROBUST_CLAIMS``, ``REPORTING_SEEDS``, ``headline_verdict``) and
its expected categories on the reporting seeds; a claims file binds them to module-level names,
beside its own ``verdicts`` fixture, so that pytest collects them there:

* every claim the notebook computes has an expected category, and every stated one is among them;
* each claim's category on the reporting seeds, allowing one step on another CPU;
* a category is stated only for ``ROBUST_CLAIMS`` (the same category on the check seeds), exactly;
* both arms of every claim are paired on the reporting seeds.
"""
from __future__ import annotations

import pytest

from kdkit.experiments.runs import within_one_step


def verdict_tests(experiment, expected: dict[str, str]):
    def test_every_claim_of_the_notebook_has_an_expected_verdict(verdicts):
        assert set(verdicts) == set(expected)
        assert set(experiment.ROBUST_CLAIMS) <= set(expected)

    @pytest.mark.parametrize("key", list(expected))
    def test_verdict_category_on_the_reporting_seeds(verdicts, key):
        comparison = verdicts[key]
        assert within_one_step(comparison.verdict, expected[key]), comparison.report()

    @pytest.mark.parametrize("key", list(expected))
    def test_headline_verdict_states_a_category_only_where_both_seed_sets_agree(verdicts, key):
        stated = experiment.headline_verdict(key, verdicts[key])
        if key in experiment.ROBUST_CLAIMS:
            assert stated == expected[key], verdicts[key].report()
        else:
            assert stated.startswith("inconclusive"), stated

    def test_every_arm_is_paired_on_the_reporting_seeds(verdicts):
        for comparison in verdicts.values():
            assert comparison.treatment.seeds == comparison.control.seeds == experiment.REPORTING_SEEDS

    return (test_every_claim_of_the_notebook_has_an_expected_verdict, test_verdict_category_on_the_reporting_seeds,
            test_headline_verdict_states_a_category_only_where_both_seed_sets_agree,
            test_every_arm_is_paired_on_the_reporting_seeds)
