"""Fast unit tests for notebook 03 (Tf-KD): argument checks, exercise checkers, teacher choice."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdkit import losses
from kdkit.exercises import tfkd as ex
from kdkit.experiments import tfkd


def _snapshot(epoch: int, val_acc: float) -> tfkd.TeacherSnapshot:
    return tfkd.TeacherSnapshot(epoch=epoch, model=nn.Identity(), val_acc=val_acc, test_acc=val_acc)


SNAPSHOTS = [_snapshot(0, 0.10), _snapshot(1, 0.36), _snapshot(3, 0.57), _snapshot(40, 0.91)]


# --------------------------------------------------------------------------------------
# Picking a teacher by its measured accuracy
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("wanted, epoch", [(0.0, 0), (0.1, 0), (0.3, 1), (0.5, 3), (0.8, 40), (1.0, 40)])
def test_pick_teacher_takes_the_closest_validation_accuracy(wanted, epoch):
    assert tfkd.pick_teacher(SNAPSHOTS, wanted).epoch == epoch


def test_pick_teacher_breaks_ties_towards_the_less_trained_snapshot():
    snapshots = [_snapshot(5, 0.6), _snapshot(2, 0.4)]
    assert tfkd.pick_teacher(snapshots, 0.5).epoch == 2


def test_pick_teacher_uses_validation_not_test_accuracy():
    snapshots = [tfkd.TeacherSnapshot(1, nn.Identity(), val_acc=0.3, test_acc=0.9),
                 tfkd.TeacherSnapshot(2, nn.Identity(), val_acc=0.9, test_acc=0.3)]
    assert tfkd.pick_teacher(snapshots, 0.9).epoch == 2


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "high"])
def test_pick_teacher_rejects_accuracies_outside_0_1(bad):
    with pytest.raises(ValueError, match="teacher accuracy"):
        tfkd.pick_teacher(SNAPSHOTS, bad)


def test_pick_teacher_needs_snapshots():
    with pytest.raises(ValueError, match="at least one"):
        tfkd.pick_teacher([], 0.5)


@pytest.mark.parametrize("epochs, match", [((), "at least one"), ((1, 1), "distinct"), ((3, 1), "increasing"),
                                           ((0, 41), "<= the teacher"), ((-1,), "snapshot epoch")])
def test_snapshot_epochs_are_checked_before_training(epochs, match):
    with pytest.raises(ValueError, match=match):
        tfkd._check_snapshot_epochs(epochs)


def test_snapshots_are_saved_at_the_requested_epochs():
    slots = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    saver = tfkd._SaveSnapshots(slots, [1, 3])
    model = nn.Linear(2, 2)
    from kdkit.train import History
    history = History()
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(epoch)
        history.records.append({"epoch": epoch})
        saver.on_epoch_end(history, model)
    assert float(slots[0].weight[0, 0].detach()) == 1.0 and float(slots[1].weight[0, 0].detach()) == 3.0


# --------------------------------------------------------------------------------------
# Argument checks of the run functions (raised before any training)
# --------------------------------------------------------------------------------------

class _FakeLab(tfkd.Lab):
    def __init__(self):  # no data, no teachers: the checks must fail before they are needed
        pass


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "distill"}, KeyError, "method"),
    ({"student": "resnet"}, KeyError, "student"),
    ({"mode": "official"}, KeyError, "mode"),
    ({"T": 0}, ValueError, "temperature T"),
    ({"alpha": 1.5}, ValueError, "alpha"),
    ({"correct_prob": -0.1}, ValueError, "correct_prob"),
    ({"teacher_acc": 2.0}, ValueError, "teacher accuracy"),
    ({"seed": -1}, ValueError, "seed"),
])
def test_method_run_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        tfkd.method_run(_FakeLab(), **kwargs)


def test_reversed_kd_needs_the_cnn_student():
    lab = _FakeLab()
    lab.snapshots, lab.copies = [], {"mlp": None}
    with pytest.raises(ValueError, match="choose student 'cnn'"):
        tfkd.method_run(lab, method="Re-KD", student="mlp")


@pytest.mark.parametrize("seeds, match", [((0,), "at least two"), ((1, 1), "distinct"), ((0, -2), "seed")])
def test_seeds_are_checked(seeds, match):
    with pytest.raises(ValueError, match=match):
        tfkd.runs(_FakeLab(), seeds, method="labels")


def test_choose_on_validation_needs_candidates():
    with pytest.raises(ValueError, match="at least one"):
        tfkd.choose_on_validation(_FakeLab(), [])


def test_reg_settings_checks_the_mode():
    with pytest.raises(KeyError, match="paper"):
        tfkd.reg_settings("official")


# --------------------------------------------------------------------------------------
# Smoothing mass and the virtual teacher's views
# --------------------------------------------------------------------------------------

def test_a_uniform_teacher_moves_alpha_times_k_minus_1_over_k_off_the_label():
    logits, labels = torch.zeros(8, 10), torch.arange(8)
    mass = tfkd.smoothing_mass(logits, labels, T=4.0, alpha=0.5)
    assert mass == pytest.approx(0.5 * 0.9)
    assert tfkd.matched_smoothing(mass, 10) == pytest.approx(0.5)


def test_virtual_teacher_views_are_distributions_flatter_in_the_code_form():
    views = tfkd.virtual_teacher_views(100, correct_prob=0.99, T=20.0)
    for probs in views.values():
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(views["code"][0]) == pytest.approx(0.0105, abs=5e-4)   # almost uniform (1%)
    assert float(views["paper"][0]) > float(views["code"][0])


def test_virtual_teacher_views_check_the_label():
    with pytest.raises(ValueError, match="label"):
        tfkd.virtual_teacher_views(10, correct_prob=0.9, T=2.0, label=10)


# --------------------------------------------------------------------------------------
# Exercise checkers: a right answer passes, typical mistakes get specific messages
# --------------------------------------------------------------------------------------

def _p_d(labels, K, a, off):
    p = torch.full((labels.shape[0], K), off)
    p[torch.arange(labels.shape[0]), labels] = a
    return p


def right_virtual_teacher(labels, K, a, T):
    return F.softmax(_p_d(labels, K, a, (1 - a) / (K - 1)) / T, dim=1)


@pytest.mark.parametrize("answer, words", [
    (lambda y, K, a, T: _p_d(y, K, a, (1 - a) / (K - 1)), "p_d itself"),
    (lambda y, K, a, T: F.softmax(_p_d(y, K, a, (1 - a) / (K - 1)), dim=1), "divide p_d by T"),
    (lambda y, K, a, T: F.softmax(_p_d(y, K, a, (1 - a) / K) / T, dim=1), "(1 - a)/(K - 1)"),
    (lambda y, K, a, T: F.log_softmax(_p_d(y, K, a, (1 - a) / (K - 1)) / T, dim=1), "log-probabilities"),
    (lambda y, K, a, T: None, "not answered"),
    (lambda y, K, a, T: 1 / 0, "ZeroDivisionError"),
])
def test_virtual_teacher_checker_names_the_mistake(answer, words):
    feedback = ex.check_virtual_teacher(answer)
    assert not feedback and words in feedback.message, feedback.message


def test_virtual_teacher_checker_accepts_a_right_answer():
    feedback = ex.check_virtual_teacher(right_virtual_teacher)
    assert feedback, feedback.message
    assert str(feedback).startswith("✅")


def right_lsr_as_kd(z_s, y, eps):
    K = z_s.shape[1]
    return losses.kd_loss(z_s, torch.zeros_like(z_s), y, T=1.0, alpha=eps) + eps * math.log(K)


@pytest.mark.parametrize("answer, words", [
    (lambda z, y, eps: losses.kd_loss(z, torch.zeros_like(z), y, T=1.0, alpha=eps), "eps * log K"),
    (lambda z, y, eps: losses.kd_loss(z, torch.zeros_like(z), y, T=1.0, alpha=1 - eps), "alpha = 1 - eps"),
    (lambda z, y, eps: losses.kd_loss(z, torch.zeros_like(z), y, T=4.0, alpha=eps), "T = 4"),
    (lambda z, y, eps: losses.kd_loss(z, 5 * F.one_hot(y, 10).double(), y, T=1.0, alpha=eps), "uniform"),
    (lambda z, y, eps: F.cross_entropy(z.detach(), y), "detach"),
    (lambda z, y, eps: None, "not answered"),
])
def test_lsr_as_kd_checker_names_the_mistake(answer, words):
    feedback = ex.check_lsr_as_kd(answer)
    assert not feedback and words in feedback.message, feedback.message


def test_lsr_as_kd_checker_accepts_a_right_answer():
    feedback = ex.check_lsr_as_kd(right_lsr_as_kd)
    assert feedback, feedback.message
