"""Notebook 00's claim, re-run over five seeds exactly as the notebook runs it."""
from __future__ import annotations

import pytest

from kdkit.experiments import mnist1d, start_here

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def data_with_teacher():
    return mnist1d.data_with_teacher(seed=0)


def test_teacher_is_a_strong_cnn(data_with_teacher):
    assert mnist1d.teacher(seed=0).metrics["test_acc"] > 0.85


def test_kd_student_beats_the_label_only_student(data_with_teacher):
    comparison = start_here.kd_versus_labels(data_with_teacher, seeds=range(5))
    assert comparison.verdict == "reproduced", comparison.report()
    assert comparison.treatment.mean < mnist1d.teacher(seed=0).metrics["test_acc"], \
        "the student should stay below its CNN teacher"
