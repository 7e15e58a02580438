"""Notebook 07's claims (many teachers), re-run with the notebook's functions, settings and seeds.

The runs are computed in the notebooks' cache (the ``notebook_cache`` fixture) as the notebook's
``multi_teacher.compute_claims`` does (the runs of ``multi_teacher.claim_calls`` in one worker process
per core), so that the notebook under nbval reads them instead of training them again; the claims are
then read in lookup-only mode, so a run that ``claim_calls`` forgot fails here.

Each test checks the verdict category on the reporting seeds 100-104 under the paired rule of
:mod:`kdkit.experiments.runs` (every teacher arm's ``alpha`` and ``T`` chosen on validation with the
tuning seeds), including the claims that do not reproduce at this scale. On another CPU a claim near
the edge may move one step (``within_one_step``); a stated verdict (``multi_teacher.ROBUST_CLAIMS``:
the same category on the seeds 200-204) must hold. A failure prints the measured interval.
"""
from __future__ import annotations

import pytest

from kdkit.data import load_mnist1d
from kdkit.exercises import multi_teacher as exercises
from kdkit.exercises.feedback import measured_outcome
from kdkit.experiments import multi_teacher, parallel
from kdkit.storage import CACHE_ENV_VAR, lookup_only
from verdict_tests import verdict_tests

pytestmark = pytest.mark.claims

EXPECTED = {                                  # reporting seeds 100-104; 200-204 in the comments
    "C7.1 views vs raw all": "inconclusive",                # +0.8 [-1.3, +2.8]; 200-204: inconclusive
    "C7.1 views vs difference all": "reproduced",           # +3.2 [+0.1, +6.3]; 200-204: reproduced, +2.7 [+0.3, +5.2]
    "C7.1 views vs spectrum all": "reproduced",             # 200-204: reproduced
    "C7.1 views vs best single all": "inconclusive",        # 200-204: inconclusive, +0.0 [-2.3, +2.4]
    "C7.1 seeds vs raw all": "inconclusive",                # 200-204: inconclusive
    "C7.1 seeds vs raw_seed1 all": "inconclusive",          # 200-204: inconclusive
    "C7.1 seeds vs raw_seed2 all": "reproduced",            # +2.2 [+0.4, +3.9]; 200-204: inconclusive, +0.5 [-2.0, +3.0]
    "C7.1 seeds vs best single all": "inconclusive",        # +0.8 [-0.5, +2.1]; 200-204: inconclusive
    "C7.2 accuracy weights all": "inconclusive",            # 200-204: inconclusive
    "C7.2 confidence weights all": "inconclusive",          # 200-204: inconclusive
    "C7.3 views vs seeds all": "contradicted",              # -0.7 [-1.3, -0.1]; 200-204: inconclusive, -0.8 [-2.7, +1.1]
    "C7.4 logit average all": "inconclusive",               # 200-204: inconclusive
    "C7.5 difference vs raw all": "contradicted",           # -2.5 [-4.9, -0.1]; 200-204: inconclusive, -2.7 [-5.8, +0.4]
    "C7.5 difference vs labels all": "inconclusive",        # +0.7 [-3.3, +4.7]; 200-204: reproduced, +2.9 [+0.4, +5.3]
    "C7.6 fused students all": "reproduced",                # 200-204: reproduced
    "C7.6 fused vs views all": "reproduced",                # +2.4 [+0.0, +4.7]; 200-204: reproduced, +2.4 [+0.6, +4.3]
    "C7.1 views vs raw tenth": "inconclusive",              # 200-204: inconclusive
    "C7.1 views vs difference tenth": "reproduced",         # 200-204: reproduced
    "C7.1 views vs spectrum tenth": "reproduced",           # 200-204: reproduced
    "C7.1 views vs best single tenth": "inconclusive",      # +0.4 [-2.5, +3.2]; 200-204: inconclusive
    "C7.1 seeds vs raw tenth": "inconclusive",              # 200-204: inconclusive
    "C7.1 seeds vs raw_seed1 tenth": "inconclusive",        # 200-204: inconclusive
    "C7.1 seeds vs raw_seed2 tenth": "reproduced",          # +2.9 [+1.0, +4.9]; 200-204: inconclusive, +0.1 [-1.5, +1.7]
    "C7.1 seeds vs best single tenth": "inconclusive",      # -0.1 [-1.7, +1.5]; 200-204: inconclusive
    "C7.2 accuracy weights tenth": "inconclusive",          # 200-204: inconclusive
    "C7.2 confidence weights tenth": "inconclusive",        # 200-204: inconclusive
    "C7.3 views vs seeds tenth": "inconclusive",            # 200-204: inconclusive
    "C7.4 logit average tenth": "inconclusive",             # +1.7 [-0.6, +3.9]; 200-204: inconclusive
    "C7.5 difference vs raw tenth": "contradicted",         # 200-204: contradicted
    "C7.5 difference vs labels tenth": "reproduced",        # 200-204: reproduced
    "C7.6 fused students tenth": "inconclusive",            # +2.1 [-1.6, +5.8]; 200-204: reproduced, +2.0 [+1.3, +2.7]
    "C7.6 fused vs views tenth": "reproduced",              # +1.8 [+0.4, +3.1]; 200-204: inconclusive, +1.3 [-1.2, +3.7]
}


@pytest.fixture(scope="module")
def verdicts(notebook_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, notebook_cache)
        data = load_mnist1d()
        parallel.compute_missing(multi_teacher.claim_calls(data))   # on every core, as the notebook does
        with lookup_only():                                          # ... which must have trained every run read
            return multi_teacher.claims(data)


(test_every_claim_of_the_notebook_has_an_expected_verdict, test_verdict_category_on_the_reporting_seeds,
 test_headline_verdict_states_a_category_only_where_both_seed_sets_agree,
 test_every_arm_is_paired_on_the_reporting_seeds) = verdict_tests(multi_teacher, EXPECTED)


def test_the_exercises_check_against_the_measured_comparisons(verdicts):
    prediction = verdicts["C7.1 views vs best single tenth"]
    right = measured_outcome(prediction)
    assert exercises.check_prediction(right, prediction)
    assert not exercises.check_prediction("higher" if right != "higher" else "lower", prediction)
    reading = verdicts["C7.3 views vs seeds all"]
    letter = {"higher": "a", "lower": "b"}.get(measured_outcome(reading), "c")
    assert exercises.check_reading(letter, reading)
