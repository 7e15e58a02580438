"""Notebook 00's claim, re-run exactly as the notebook runs it (same function, seeds and cache).

The results go to the notebooks' cache, so that notebook 00 under nbval reads them instead of
training the same twenty students again.
"""
from __future__ import annotations

import pytest

from kdkit.exercises.feedback import measured_outcome
from kdkit.experiments import mnist1d, start_here
from kdkit.experiments.runs import within_one_step
from kdkit.storage import CACHE_ENV_VAR

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def results(notebook_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, notebook_cache)
        teacher = mnist1d.teacher(seed=0)
        data = mnist1d.data_with_teacher(seed=0)
        return (teacher, start_here.kd_versus_labels(data, seeds=start_here.REPORTING_SEEDS),
                start_here.teacher_only_versus_with_labels(data))


def test_teacher_is_a_strong_cnn(results):
    teacher, *_ = results
    assert teacher.metrics["test_acc"] > 0.85


def test_kd_student_beats_the_label_only_student(results):
    teacher, comparison, _ = results
    assert comparison.verdict == "reproduced", comparison.report()
    assert comparison.treatment.mean < teacher.metrics["test_acc"], "the student stays below its CNN teacher"


def test_tuning_and_reporting_seeds_are_disjoint():
    assert not set(start_here.TUNING_SEEDS) & set(start_here.REPORTING_SEEDS)
    assert len(start_here.REPORTING_SEEDS) >= 8


def test_the_instructor_answer_to_exercise_2_is_what_the_notebook_measures(results):
    from kdkit.exercises import start_here as ex00

    *_, exercise = results
    assert within_one_step(measured_outcome(exercise), ex00.ANSWER_2), exercise.report()
