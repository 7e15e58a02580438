"""Notebook 01 (Ba & Caruana): argument checks of the experiment functions and the exercise checkers."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdkit.data import UNLABELED, DataSplits, Split
from kdkit.exercises import ba_caruana as exercises
from kdkit.experiments import ba_caruana as bc
from kdkit.models import count_parameters


@pytest.fixture
def tiny() -> bc.MimicData:
    """A made-up MNIST-1D-shaped problem with fake teacher logits: no teacher, no generator."""
    g = torch.Generator().manual_seed(0)

    def split(n, labelled=True):
        y = torch.randint(0, 10, (n,), generator=g) if labelled else torch.full((n,), UNLABELED)
        return Split(torch.randn(n, 40, generator=g), y, torch.randn(n, 10, generator=g))

    data = DataSplits("tiny", split(64), split(32), split(32), 10, tuple("0123456789"))
    return bc.MimicData(data, split(100, labelled=False), "fake teacher", 0.9)


@pytest.mark.parametrize("settings, message", [
    ({"transfer_size": -1}, "transfer_size"),
    ({"transfer_size": 101}, "at most 100"),
    ({"transfer_size": 2.5}, "transfer_size"),
    ({"width": 0}, "width"),
    ({"bottleneck": -2}, "bottleneck"),
    ({"seed": -1}, "seed"),
    ({"loss": "labels", "transfer_size": 10}, "transfer set has none"),
])
def test_bad_arguments_are_refused_before_training(tiny, settings, message):
    with pytest.raises(ValueError, match=message):
        bc.student_run(tiny, **{"transfer_size": 0, **settings})


def test_unknown_loss_lists_the_valid_ones(tiny):
    with pytest.raises(KeyError, match="l2_logits"):
        bc.student_run(tiny, loss="mse")


def test_a_run_uses_the_transfer_set_and_the_budget(tiny):
    result = bc.student_run(tiny, width=8, transfer_size=100, seed=0)
    assert result.config["epochs"] == bc.epochs_for(164, 100) == round(bc.EXAMPLE_BUDGET / 164)
    assert result.config["batch_size"] == bc.TRANSFER_BATCH
    assert 0.0 <= result.test_acc <= 1.0


def test_labels_run_on_the_labelled_set_only(tiny):
    result = bc.student_run(tiny, width=8, transfer_size=0, loss="labels", seed=0)
    assert result.config["epochs"] == bc.LABELLED_EPOCHS and result.config["transfer_size"] == 0


def test_same_seed_same_result(tiny):
    a = bc.student_run(tiny, width=8, transfer_size=0, seed=3)
    b = bc.student_run(tiny, width=8, transfer_size=0, seed=3)
    assert a.history.series("val_acc") == b.history.series("val_acc")


def test_the_study_trains_each_setting_once(tiny):
    study = bc.Study({"cnn": tiny})
    first = study.run(seed=0, width=8, transfer_size=0)
    assert study.run(seed=0, width=8, transfer_size=0) is first
    with pytest.raises(KeyError, match="cnn"):
        study.run("ensemble", seed=0)


def test_playground_run_refuses_an_unknown_teacher(tiny):
    run = bc.playground_run(bc.Study({"cnn": tiny}))
    with pytest.raises(KeyError, match="teacher"):
        run(teacher="resnet", width=8, bottleneck=0, transfer_size=0, loss="l2_logits", seed=0)


@pytest.mark.parametrize("d, h, k, c", [(40, 512, 0, 10), (40, 512, 16, 10), (1845, 2000, 250, 183)])
def test_parameter_count_formula_matches_the_model(d, h, k, c):
    from kdkit.models import shallow_mlp
    assert bc.parameter_count(d, h, k, c) == count_parameters(shallow_mlp((d,), c, width=h, bottleneck=k or None))


# --------------------------------------------------------------------------------------
# Exercise checkers: a correct answer passes; each typical mistake gets its own message
# --------------------------------------------------------------------------------------

def test_correct_mimic_loss_passes():
    feedback = exercises.check_logit_l2_loss(lambda s, t: 0.5 * (s - t.detach()).pow(2).sum(dim=1).mean())
    assert feedback and feedback.message.startswith("Correct")


@pytest.mark.parametrize("candidate, words", [
    (lambda s, t: (s - t.detach()).pow(2).sum(dim=1).mean(), "1/2 is missing"),
    (lambda s, t: 0.5 * (s - t.detach()).pow(2).mean(), "averaged over the classes"),
    (lambda s, t: F.mse_loss(s, t.detach()), "F.mse_loss(z_s, z_t)"),
    (lambda s, t: 0.5 * (s.softmax(1) - t.softmax(1)).pow(2).sum(dim=1).mean(), "probabilities"),
    (lambda s, t: 0.5 * (s - t.detach()).pow(2).sum(), "summed over the batch"),
    (lambda s, t: 0.5 * (s - t.detach()).pow(2).sum(dim=1), "one number"),
    (lambda s, t: 0.5 * (s - t).pow(2).sum(dim=1).mean(), "Detach"),
    (lambda s, t: 0.5 * (s.detach() - t).pow(2).sum(dim=1).mean(), "no gradient reaches the student"),
    (lambda s, t: 0.5 * (s - t.detach()).pow(2).sum(dim=1).sum() / 16, "hard-coded"),
    (lambda s, t: 1 / 0, "ZeroDivisionError"),
])
def test_mimic_loss_mistakes_are_named(candidate, words):
    feedback = exercises.check_logit_l2_loss(candidate)
    assert not feedback
    assert words in str(feedback)


def test_correct_parameter_count_passes():
    assert exercises.check_parameter_count(lambda d, h, k, c: k * d + (k or d) * h + h + h * c + c)


@pytest.mark.parametrize("candidate, words", [
    (lambda d, h, k, c: k * d + (k or d) * h + h * c, "biases are missing"),
    (lambda d, h, k, c: k * d + (k or d) * h + h * c + c, "hidden layer's biases"),
    (lambda d, h, k, c: d * h + h + h * c + c, "V (input_dim x k) followed by U"),
    (lambda d, h, k, c: k * d + k + (k or d) * h + h + h * c + c, "no bias"),
    (lambda d, h, k, c: (k or d) * h + h + h * c + c, "V (input_dim * k) are missing"),
    (lambda d, h, k, c: 7, "you said 7"),
])
def test_parameter_count_mistakes_are_named(candidate, words):
    feedback = exercises.check_parameter_count(candidate)
    assert not feedback
    assert words in str(feedback)
