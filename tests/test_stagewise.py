"""Stagewise KD (notebook 06): the stage loss, the procedure (one stage at a time, everything else
frozen: weights and batch-norm statistics), the simultaneous baseline, and the experiment's
pairing (same student weights and batches in every arm)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.experiments import stagewise
from kdkit.models import build_model, weight_fingerprint
from kdkit.objectives import Batch, SimultaneousHints, StageRegression
from kdkit.train import Callback, fit


def small_split(data, n=96):
    """The first ``n`` training signals with a (randomly initialised, untrained) teacher's maps: the
    procedure's mechanics do not need a trained teacher."""
    teacher = stagewise.build_student(data, seed=7)      # any network with the student's stage shapes
    split = data.train.subset(torch.arange(n))
    return stagewise.with_teacher(split, teacher)


def batch_of(split, n=16):
    return Batch(split.x[:n], split.y[:n], split.teacher_logits[:n], {k: v[:n] for k, v in split.extras.items()})


def state_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def stage_states(model):
    return {name: state_of(part) for name, part in model.stage_modules().items()}


class Snapshots(Callback):
    """The model's stage states after every epoch (with one epoch a step: after every step), and
    what the procedure tells its callbacks."""

    def __init__(self):
        self.states, self.starts, self.ends, self.seen = [], [], 0, []

    def on_fit_start(self, model, epochs):
        self.starts.append(epochs)

    def on_epoch_end(self, history, model):
        self.states.append(stage_states(model))
        self.seen.append([r["epoch"] for r in history.records])

    def on_fit_end(self, history):
        self.ends += 1


def test_stage_regression_is_the_mse_of_one_stage_map(mnist1d):
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    batch = batch_of(split)
    out = StageRegression("stage2", teacher_feature="teacher.stage2").step(model, batch, update=None)
    _, features = model.forward_with_features(batch.x)
    torch.testing.assert_close(out.loss, F.mse_loss(features["stage2"], batch.extras["teacher.stage2"]))
    relative = F.mse_loss(features["stage2"], batch.extras["teacher.stage2"]) / batch.extras["teacher.stage2"].pow(2).mean()
    torch.testing.assert_close(out.metrics["relative_mse"], relative.detach())

    pre = StageRegression("stem", teacher_feature="teacher.pre.stem", pre_activation=True).step(model, batch, None)
    _, pre_features = model.forward_with_features(batch.x, pre_activation=True)
    torch.testing.assert_close(pre.loss, F.mse_loss(pre_features["stem"], batch.extras["teacher.pre.stem"]))


def test_cosine_feature_loss_ignores_scale_and_matches_its_formula():
    generator = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(5, 3, 8, generator=generator), torch.randn(5, 3, 8, generator=generator)
    assert losses.cosine_feature_loss(3.0 * f_t, f_t).abs() < 1e-6
    expected = (1 - F.cosine_similarity(f_s.flatten(1), f_t.flatten(1), dim=1)).mean()
    torch.testing.assert_close(losses.cosine_feature_loss(f_s, f_t), expected)
    with pytest.raises(ValueError, match="same shape"):
        losses.cosine_feature_loss(f_s, f_t[:, :2])


def test_simultaneous_hints_is_the_official_codes_normalised_sum(mnist1d):
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    batch = batch_of(split)
    out = SimultaneousHints(stagewise.STAGES).step(model, batch, update=None)
    logits, features = model.forward_with_features(batch.x)
    hints = [F.mse_loss(features[k], batch.extras[f"teacher.{k}"]) for k in stagewise.STAGES]
    torch.testing.assert_close(out.loss, (F.cross_entropy(logits, batch.y) + sum(hints)) / 5)


def test_each_step_moves_only_its_own_stage_weights_and_batch_norm_statistics(mnist1d):
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    spy = Snapshots()
    initial = stage_states(model)
    history = stagewise.train_stagewise(model, split, mnist1d.val, epochs=1, lr=1e-2, seed=1, callbacks=[spy])
    states = [initial, *spy.states]
    steps = [*stagewise.STAGES, "classifier"]
    assert len(spy.states) == len(steps)
    # the callbacks see one procedure: one start (with every step's epochs), one end, the epochs so far
    assert spy.starts == [5] and spy.ends == 1 and spy.seen[-1] == [1, 2, 3, 4, 5]
    for step, (before, after) in zip(steps, zip(states, states[1:])):
        for name in before:
            moved = [k for k in before[name] if not torch.equal(before[name][k], after[name][k])]
            if name == step:
                assert moved, f"{name} did not train in its own step"
                if name != "classifier":
                    assert any("running_mean" in k for k in moved), f"{name}'s batch norm was not in train mode"
            else:
                assert not moved, f"step {step!r} moved {name}: {moved}"
    assert [r["stage"] for r in history.records] == steps
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4, 5]
    assert "val_acc" in history.last and all(p.requires_grad for p in model.parameters())


def test_a_stage_left_out_trains_with_the_classifier_on_labels(mnist1d):
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    spy = Snapshots()
    stagewise.train_stagewise(model, split, mnist1d.val, epochs=1, lr=1e-2, seed=1,
                              stages=("stem", "stage1"), callbacks=[spy])
    before_last, after = spy.states[-2], spy.states[-1]
    changed = {name for name in after if any(not torch.equal(before_last[name][k], after[name][k]) for k in after[name])}
    assert changed == {"stage2", "stage3", "classifier"}


def test_the_regressor_is_trained_with_its_stage_and_draws_no_random_numbers_of_the_run(mnist1d):
    state = torch.random.get_rng_state()
    regressor = stagewise.stage_regressor(8, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(regressor.weight, stagewise.stage_regressor(8, seed=3).weight)
    before = state_of(regressor)
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    parts = model.stage_modules()
    untouched = state_of(parts["stage1"])
    method = StageRegression("stem", teacher_feature="teacher.stem", regressor=regressor)
    fit(model, split, None, objective=method, trainable=[parts["stem"]], epochs=1, lr=1e-2, seed=1)
    assert any(not torch.equal(before[k], v) for k, v in state_of(regressor).items()), "the regressor did not train"
    assert all(torch.equal(untouched[k], v) for k, v in state_of(parts["stage1"]).items())


def test_every_arm_starts_from_the_same_weights_and_data(mnist1d):
    assert weight_fingerprint(stagewise.build_student(mnist1d, 100)) == weight_fingerprint(
        stagewise.build_student(mnist1d, 100))
    assert weight_fingerprint(stagewise.build_student(mnist1d, 100)) != weight_fingerprint(
        stagewise.build_student(mnist1d, 101))
    a, b = (stagewise.training_split(mnist1d, "tenth", 100) for _ in range(2))
    assert torch.equal(a.x, b.x) and abs(len(a) - 0.1 * len(mnist1d.train)) <= 10    # stratified: per-class rounding
    assert not torch.equal(a.x, stagewise.training_split(mnist1d, "tenth", 101).x)
    assert abs(len(stagewise.training_split(mnist1d, "quarter", 100)) - 0.25 * len(mnist1d.train)) <= 10


def test_student_stages_have_the_teachers_shapes(mnist1d):
    student = stagewise.build_student(mnist1d, 0)
    teacher = build_model("resnet", mnist1d.input_shape, 10, seed=0, widths=stagewise.TEACHER["widths"],
                          blocks=stagewise.TEACHER["blocks"])
    x = mnist1d.val.x[:4]
    ours, theirs = stagewise.teacher_maps(student, x), stagewise.teacher_maps(teacher, x)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert all(v == 0.0 for v in stagewise.relative_mse(student, student, x).values())


def test_the_equal_compute_budget_is_every_stages_epochs_together():
    for regime in stagewise.FRACTIONS:
        assert stagewise.equal_compute_epochs(regime) == 5 * stagewise.RECIPES[("stagewise", regime)]["epochs"]


@pytest.mark.parametrize("call, message", [
    (lambda d: stagewise.stagewise_run(d, seed=1, regime="half"), "unknown regime 'half'"),
    (lambda d: stagewise.variant_run(d, "magic", seed=1), "unknown variant 'magic'"),
    (lambda d: stagewise.stagewise_run(d, seed=1, stages=("stage9",)), "unknown stage 'stage9'"),
    (lambda d: stagewise.stagewise_run(d, seed=1, pace="fast"), "unknown pace 'fast'"),
    (lambda d: stagewise.baseline_run(d, "stagewise", seed=1), "unknown arm 'stagewise'"),
])
def test_bad_choices_name_the_valid_ones(mnist1d, call, message):
    with pytest.raises(KeyError, match=message):
        call(mnist1d)


def test_stage_regression_names_a_missing_feature(mnist1d):
    split = small_split(mnist1d)
    model = stagewise.build_student(mnist1d, seed=1)
    with pytest.raises(ValueError, match="not one of the model's features"):
        StageRegression("stage7", teacher_feature="teacher.stem").step(model, batch_of(split), None)
    with pytest.raises(ValueError, match="needs the cached tensor 'teacher.nowhere'"):
        StageRegression("stem", teacher_feature="teacher.nowhere").step(model, batch_of(split), None)
    with pytest.raises(KeyError, match="unknown loss 'l1'"):
        StageRegression("stem", teacher_feature="teacher.stem", loss="l1")
