"""Notebook 03's claims (Yuan et al. 2020, Tf-KD), re-run with the notebook's functions and seeds.

Each test asserts the verdict the notebook prints (reproduced or not), whichever way it
goes: where the paper's effect does not appear at this scale, the test says so too. Like the
notebook, the runs use one torch thread (tests/conftest.py): the numbers depend on it.
"""
from __future__ import annotations

import pytest

from kdkit.experiments import tfkd
from kdkit.storage import CACHE_ENV_VAR

pytestmark = pytest.mark.claims


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The teacher snapshots and label-trained copies, trained once in a private cache.

    On one torch thread, like the notebook (tests/conftest.py sets it for the whole session).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(tmp_path_factory.mktemp("claims-cache")))
        return tfkd.build_lab()


def test_snapshots_span_chance_to_fully_trained(lab):
    accuracies = [s.val_acc for s in lab.snapshots]
    assert accuracies[0] < 0.15 and accuracies[-1] > 0.85
    assert lab.copies["mlp"].metrics["test_acc"] < lab.snapshots[-1].test_acc   # the MLP is the weaker model


def test_normal_kd_helps_the_mlp(lab):
    comparison = tfkd.normal_kd(lab)
    assert comparison.reproduced, comparison.report()


def test_a_defective_teacher_hurts_the_mlp(lab):
    comparison = tfkd.defective_kd(lab, student="mlp", epoch=1)
    assert not comparison.reproduced, comparison.report()
    assert comparison.gap < 0, "the 1-epoch teacher makes the MLP worse than labels alone"


def test_reversed_kd_does_not_help_the_cnn(lab):
    comparison = tfkd.reversed_kd(lab)
    assert not comparison.reproduced, comparison.report()


def test_a_defective_teacher_helps_the_cnn_a_little(lab):
    comparison = tfkd.defective_kd(lab, student="cnn", epoch=1)
    assert comparison.reproduced, comparison.report()


def test_teacher_quality_curve_only_the_near_uniform_teachers_help(lab):
    curve = tfkd.teacher_quality_curve(lab, student="cnn")
    assert curve.helpful_teachers() == (0, 1), curve.table()


def test_self_kd_does_not_beat_the_seed_spread(lab):
    comparison = tfkd.self_kd(lab, student="cnn")
    assert not comparison.reproduced, comparison.report()


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_virtual_teacher_helps_the_cnn(lab, mode):
    comparison = tfkd.reg_versus_labels(lab, mode=mode)
    assert comparison.reproduced, comparison.report()


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_virtual_teacher_does_not_beat_label_smoothing_of_the_same_mass(lab, mode):
    comparison = tfkd.reg_versus_lsr(lab, mode=mode)
    assert not comparison.reproduced, comparison.report()


def test_virtual_teacher_beats_kd_at_the_weak_teacher_settings(lab):
    comparison = tfkd.reg_versus_kd(lab, mode="paper")
    assert comparison.reproduced, comparison.report()


def test_kd_beats_label_smoothing_of_the_same_mass_on_the_mlp(lab):
    comparison = tfkd.kd_versus_matched_lsr(lab, student="mlp")
    assert comparison.reproduced, comparison.report()
