"""kdkit.train: the one training loop, evaluation, interruption and cached teacher logits.

Everything trains tiny MLPs on a synthetic, easy 4-class problem (Gaussian blobs) so the
whole file runs in a few seconds.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdkit import objectives
from kdkit.data import UNLABELED, DataSplits, Split, concat_splits
from kdkit.models import build_model
from kdkit.train import (Callback, FitInterrupted, History, evaluate, fit, predict_logits,
                         with_teacher_logits)

NUM_CLASSES, DIM = 4, 8
ALL_KEYS = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}


def blobs(n: int, seed: int) -> Split:
    """Four well separated Gaussian blobs in 8-D: a linear problem any MLP solves quickly."""
    centres = 3.0 * torch.randn(NUM_CLASSES, DIM, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    y = y[torch.randperm(n, generator=g)]
    return Split(centres[y] + torch.randn(n, DIM, generator=g), y)


@pytest.fixture
def toy() -> DataSplits:
    return DataSplits(name="blobs", train=blobs(256, 1), val=blobs(128, 2), test=blobs(128, 3),
                      num_classes=NUM_CLASSES, class_names=tuple("abcd"))


def student(seed=0, hidden=(16,)):
    return build_model("mlp", (DIM,), NUM_CLASSES, seed=seed, hidden=hidden)


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_time(history: History):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records]


class Recorder(Callback):
    """Records the calls and the weights at the end of every epoch."""

    def __init__(self):
        self.calls, self.states = [], []

    def on_fit_start(self, model, epochs):
        self.calls.append(("start", epochs))

    def on_epoch_end(self, history, model):
        self.calls.append(("epoch", len(history)))
        self.states.append(state_of(model))

    def on_fit_end(self, history):
        self.calls.append(("end", len(history)))


class InterruptAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, history, model):
        if len(history) == self.epoch:
            raise KeyboardInterrupt


# --------------------------------------------------------------------------------------
# History and learning
# --------------------------------------------------------------------------------------

def test_fit_returns_a_history_with_one_record_per_epoch(toy):
    recorder = Recorder()
    history = fit(student(), toy.train, toy.val, epochs=3, batch_size=64, callbacks=[recorder])
    assert len(history) == 3 and not history.interrupted
    assert all(set(record) == ALL_KEYS for record in history.records)
    assert history.series("epoch") == [1, 2, 3]
    assert recorder.calls == [("start", 3), ("epoch", 1), ("epoch", 2), ("epoch", 3), ("end", 3)]

    no_val = fit(student(), toy.train, epochs=2, batch_size=64)
    assert all(set(r) == ALL_KEYS - {"val_loss", "val_acc"} for r in no_val.records)
    with pytest.raises(ValueError, match="empty"):
        History().last


def test_fit_learns_an_easy_problem(toy):
    model = student()
    before = evaluate(model, toy.val)["acc"]
    history = fit(model, toy.train, toy.val, epochs=8, batch_size=32, lr=1e-2)
    assert before < 0.6
    assert history.last["val_acc"] > 0.95 and history.last["train_acc"] > 0.95
    assert history.last["train_loss"] < 0.5 * history.records[0]["train_loss"]
    # the last record describes the model that fit returned
    after = evaluate(model, toy.val)
    assert after["acc"] == pytest.approx(history.last["val_acc"])
    assert after["loss"] == pytest.approx(history.last["val_loss"], rel=1e-5)
    assert not model.training  # fit leaves the model in eval mode


def test_same_seed_same_history_and_weights(toy):
    def run(fit_seed):
        model = student(seed=0)
        history = fit(model, toy.train, toy.val, epochs=3, batch_size=32, seed=fit_seed)
        return without_time(history), state_of(model)

    h1, w1 = run(0)
    h2, w2 = run(0)
    h3, w3 = run(1)
    assert h1 == h2 and same_state(w1, w2)
    assert not same_state(w1, w3)   # the fit seed changes the order of the mini-batches
    assert h1 != h3


def test_sgd_and_weight_decay_also_train(toy):
    history = fit(student(), toy.train, toy.val, epochs=6, batch_size=32, lr=5e-2,
                  optimizer="sgd", weight_decay=1e-4)
    assert history.last["val_acc"] > 0.9


def test_cosine_schedule_follows_the_closed_form_and_ends_near_zero(toy):
    lr, epochs = 0.01, 20
    small = toy.train.subset(torch.arange(32))
    history = fit(student(), small, epochs=epochs, batch_size=32, lr=lr, schedule="cosine")
    expected = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    assert history.series("lr") == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert history.series("lr")[-1] < 0.01 * lr
    constant = fit(student(), small, epochs=3, batch_size=32, lr=lr)
    assert constant.series("lr") == [lr] * 3


# --------------------------------------------------------------------------------------
# Errors before training
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("objective", [objectives.Distillation(), objectives.LogitMimic(),
                                       objectives.SoftTargets(T=2.0)])
def test_objectives_needing_teacher_logits_fail_before_training(toy, objective):
    model, recorder = student(), Recorder()
    initial = state_of(model)
    with pytest.raises(ValueError, match="needs teacher logits.*with_teacher_logits"):
        fit(model, toy.train, toy.val, objective=objective, epochs=2, callbacks=[recorder])
    assert same_state(state_of(model), initial)
    assert recorder.calls == []


@pytest.mark.parametrize("kwargs, error, match", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": -3}, ValueError, "epochs"),
    ({"epochs": 2.5}, ValueError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": -1e-3}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"optimizer": "rmsprop"}, KeyError, "optimizer.*adam, sgd"),
    ({"schedule": "step"}, KeyError, "schedule.*constant, cosine"),
])
def test_bad_arguments_fail_before_training(toy, kwargs, error, match):
    model, recorder = student(), Recorder()
    initial = state_of(model)
    with pytest.raises(error, match=match):
        fit(model, toy.train, toy.val, callbacks=[recorder], **{"epochs": 2, **kwargs})
    assert same_state(state_of(model), initial)
    assert recorder.calls == []


def test_bad_data_fails_before_training(toy):
    model = student()
    initial = state_of(model)
    x = toy.train.x.clone()
    x[100, 3] = float("nan")
    with pytest.raises(ValueError, match="train.x contains NaN"):
        fit(model, Split(x, toy.train.y), epochs=2)
    logits = torch.zeros(len(toy.train), NUM_CLASSES)
    logits[200, 0] = float("inf")
    with pytest.raises(ValueError, match="train.teacher_logits contains NaN or inf"):
        fit(model, toy.train.with_teacher_logits(logits), objective=objectives.LogitMimic(), epochs=2)
    y = toy.train.y.clone()
    y[150] = NUM_CLASSES
    with pytest.raises(ValueError, match="train.y"):
        fit(model, Split(toy.train.x, y), epochs=2)
    wrong_k = toy.train.with_teacher_logits(torch.zeros(len(toy.train), NUM_CLASSES + 1))
    with pytest.raises(ValueError, match="teacher_logits"):
        fit(model, wrong_k, objective=objectives.Distillation(), epochs=2)
    with pytest.raises(ValueError, match="empty"):
        fit(model, toy.train.subset(torch.arange(0)), epochs=2)
    assert same_state(state_of(model), initial)


def test_unlabeled_examples_with_a_label_objective_fail_before_training(toy):
    # The first two examples are labelled, later ones are UNLABELED (-1), as in
    # concat_splits(labelled, transfer set): a label objective must fail before any update.
    teacher = student(seed=5)
    mixed = with_teacher_logits(teacher, concat_splits(toy.train, blobs(64, 7).unlabeled()))
    model = student()
    initial = state_of(model)
    with pytest.raises(ValueError, match="label"):
        fit(model, mixed, objective=objectives.Distillation(T=2.0), epochs=1, batch_size=32)
    assert same_state(state_of(model), initial)


def test_an_unusable_validation_split_fails_before_training(toy):
    # An all-unlabeled validation split must be refused before the first epoch, not after it.
    model = student()
    initial = state_of(model)
    with pytest.raises(ValueError, match="label"):
        fit(model, toy.train, toy.val.unlabeled(), epochs=2)
    assert same_state(state_of(model), initial), "the model was trained before the error"


def test_a_diverging_run_is_reported(toy):
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(student(), toy.train, epochs=2, lr=1e30, optimizer="sgd")


# --------------------------------------------------------------------------------------
# Interruption (Ctrl-C)
# --------------------------------------------------------------------------------------

def test_keyboard_interrupt_in_a_callback_keeps_the_completed_epochs(toy):
    model, recorder = student(), Recorder()
    with pytest.raises(FitInterrupted) as caught:
        fit(model, toy.train, toy.val, epochs=6, batch_size=32, callbacks=[recorder, InterruptAt(3)])
    history = caught.value.history
    assert history.interrupted and len(history) == 3 and history.series("epoch") == [1, 2, 3]
    assert same_state(state_of(model), recorder.states[2])
    assert recorder.calls[-1] == ("end", 3)          # on_fit_end still ran
    assert "(3 of them)" in str(caught.value)


class InterruptingObjective:
    """Cross-entropy that raises KeyboardInterrupt at its n-th call (mid-epoch)."""

    def __init__(self, at_call):
        self.at_call, self.calls = at_call, 0

    def __call__(self, logits, batch):
        self.calls += 1
        if self.calls == self.at_call:
            raise KeyboardInterrupt
        return F.cross_entropy(logits, batch.y)


def test_keyboard_interrupt_mid_epoch_rolls_back_to_the_last_complete_epoch(toy):
    steps_per_epoch = len(toy.train) // 32                  # 8
    # call 1 is fit's pre-training check; interrupt at the 3rd step of epoch 4
    objective = InterruptingObjective(at_call=1 + 3 * steps_per_epoch + 3)
    model, recorder = student(), Recorder()
    with pytest.raises(FitInterrupted) as caught:
        fit(model, toy.train, toy.val, objective=objective, epochs=6, batch_size=32, callbacks=[recorder])
    history = caught.value.history
    assert history.interrupted and len(history) == 3
    assert len(recorder.states) == 3
    assert same_state(state_of(model), recorder.states[-1])
    # the tensor checks that training switched off are back on
    with pytest.raises(ValueError, match="contains NaN"):
        objectives.CrossEntropy()(torch.full((2, NUM_CLASSES), float("nan")), objectives.Batch(
            torch.zeros(2, DIM), torch.zeros(2, dtype=torch.int64), None))


def test_interrupt_in_the_first_epoch_restores_the_initial_weights(toy):
    model = student()
    initial = state_of(model)
    with pytest.raises(FitInterrupted) as caught:
        fit(model, toy.train, objective=InterruptingObjective(at_call=4), epochs=3, batch_size=32)
    assert len(caught.value.history) == 0 and caught.value.history.interrupted
    assert same_state(state_of(model), initial)


# --------------------------------------------------------------------------------------
# Teacher logits, evaluation, unlabeled data
# --------------------------------------------------------------------------------------

def test_with_teacher_logits_attaches_averaged_logits_on_every_split(toy):
    teachers = [student(seed=s) for s in (10, 11, 12)]
    with_logits = with_teacher_logits(teachers, toy)
    for name in ("train", "val", "test"):
        split = getattr(with_logits, name)
        assert split.teacher_logits.shape == (len(split), NUM_CLASSES)
        with torch.no_grad():
            expected = sum(t.eval()(split.x) for t in teachers) / 3
        torch.testing.assert_close(split.teacher_logits, expected)
        assert torch.equal(split.x, getattr(toy, name).x)
    one = with_teacher_logits(teachers[0], toy.val)
    with torch.no_grad():
        torch.testing.assert_close(one.teacher_logits, teachers[0](toy.val.x))
    assert toy.train.teacher_logits is None            # the input is not modified
    with pytest.raises(ValueError, match="teacher"):
        with_teacher_logits([], toy)


def test_teacher_runs_in_eval_mode_and_keeps_its_state(toy):
    teacher = build_model("resnet", (DIM,), NUM_CLASSES, seed=0, widths=(4, 8), blocks=(1, 1))
    teacher.train()
    buffers = state_of(teacher)
    logits = with_teacher_logits(teacher, toy.val).teacher_logits
    assert teacher.training                              # mode restored
    assert same_state(state_of(teacher), buffers)        # batch-norm statistics untouched
    with torch.no_grad():
        torch.testing.assert_close(logits, teacher.eval()(toy.val.x))


def test_predict_logits_batches_give_the_same_answer(toy):
    model = student()
    torch.testing.assert_close(predict_logits(model, toy.train.x, batch_size=7),
                               predict_logits(model, toy.train.x))


def test_evaluate_uses_only_labelled_examples(toy):
    model = student()
    fit(model, toy.train, epochs=2, batch_size=32)
    y = toy.val.y.clone()
    y[::3] = UNLABELED
    result = evaluate(model, Split(toy.val.x, y))
    known = y != UNLABELED
    with torch.no_grad():
        logits = model(toy.val.x[known])
    assert result["acc"] == pytest.approx(float((logits.argmax(1) == y[known]).float().mean()))
    assert result["loss"] == pytest.approx(float(F.cross_entropy(logits, y[known])), rel=1e-5)
    with pytest.raises(ValueError, match="labelled"):
        evaluate(model, toy.val.unlabeled())


def test_mimic_training_on_labelled_plus_unlabeled_data(toy):
    """Ba & Caruana: the transfer set is labelled only by the teacher's logits."""
    teacher = student(seed=3, hidden=(32,))
    fit(teacher, toy.train, epochs=5, batch_size=32, lr=1e-2)
    transfer = blobs(256, 9).unlabeled()
    train = with_teacher_logits(teacher, concat_splits(toy.train.subset(torch.arange(64)), transfer))
    assert (train.y == UNLABELED).sum() == 256
    model = student(seed=0)
    history = fit(model, train, toy.val, objective=objectives.LogitMimic(), epochs=8, batch_size=32,
                  lr=1e-2)
    losses = history.series("train_loss")
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.2 * losses[0]
    assert history.last["train_acc"] > 0.9  # measured on the labelled half only
    assert history.last["val_acc"] > 0.9
    # trained on the unlabeled examples only: labels are never needed
    only_unlabeled = fit(student(seed=0), train.subset(train.y == UNLABELED),
                         objective=objectives.LogitMimic(), epochs=1, batch_size=64)
    assert math.isnan(only_unlabeled.last["train_acc"])


@pytest.mark.parametrize("objective", [objectives.Distillation(T=4.0, alpha=0.9),
                                       objectives.SoftTargets(T=2.0),
                                       objectives.LabelSmoothing(0.1),
                                       objectives.VirtualTeacher(T=2.0, alpha=0.3)])
def test_every_objective_trains_the_student(toy, objective):
    teacher = student(seed=3, hidden=(32,))
    fit(teacher, toy.train, epochs=4, batch_size=32, lr=1e-2)
    data = with_teacher_logits(teacher, toy)
    history = fit(student(), data.train, data.val, objective=objective, epochs=5, batch_size=32, lr=1e-2)
    assert history.last["val_acc"] > 0.9


def test_make_objective_by_name():
    assert objectives.make_objective("kd", T=2.0, alpha=0.3) == objectives.Distillation(T=2.0, alpha=0.3)
    with pytest.raises(KeyError, match="objective.*kd.*labels"):
        objectives.make_objective("fitnet")
    with pytest.raises(ValueError, match="temperature T"):
        objectives.make_objective("kd", T=0)


def test_training_leaves_tensor_checks_enabled(toy):
    fit(student(), toy.train, epochs=1, batch_size=64)
    with pytest.raises(ValueError, match="NaN"):
        objectives.CrossEntropy()(torch.full((2, NUM_CLASSES), float("nan")),
                                  objectives.Batch(None, torch.zeros(2, dtype=torch.int64), None))


def test_validating_every_few_epochs_trains_the_same_weights_and_keeps_the_last_epoch(toy):
    every, sparse = student(), student()
    full = fit(every, toy.train, toy.val, epochs=5, lr=1e-2)
    few = fit(sparse, toy.train, toy.val, epochs=5, lr=1e-2, validate_every=2)
    assert same_state(state_of(every), state_of(sparse))
    assert few.epochs_of("val_acc") == [2, 4, 5] and few.last["val_acc"] == full.last["val_acc"]
    assert few.series("val_acc") == [full.records[i]["val_acc"] for i in (1, 3, 4)]
