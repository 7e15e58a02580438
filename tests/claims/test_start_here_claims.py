"""Notebook 00's claim, re-run over five seeds exactly as the notebook runs it."""
from __future__ import annotations

import pytest

from kdkit.experiments import mnist1d, start_here
from kdkit.storage import CACHE_ENV_VAR

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def teacher_and_data(tmp_path_factory):
    """The seed-0 teacher (trained once, in a private cache) and the data with its logits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.mktemp("claims-cache")))
        return mnist1d.teacher(seed=0), mnist1d.data_with_teacher(seed=0)


def test_teacher_is_a_strong_cnn(teacher_and_data):
    teacher, _ = teacher_and_data
    assert teacher.metrics["test_acc"] > 0.85


def test_kd_student_beats_the_label_only_student(teacher_and_data):
    teacher, data = teacher_and_data
    comparison = start_here.kd_versus_labels(data, seeds=range(5))
    assert comparison.verdict == "reproduced", comparison.report()
    assert comparison.treatment.mean < teacher.metrics["test_acc"], "the student stays below its CNN teacher"
