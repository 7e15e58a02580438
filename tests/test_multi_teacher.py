"""Many teachers (notebook 07): the views the teachers read, the multi-teacher objective, and the
experiment's pairing (same student weights and batches in every arm; the fused students are the
single-teacher students)."""
from __future__ import annotations

import pytest
import torch

from kdkit import checkpoints, losses, views
from kdkit.experiments import multi_teacher
from kdkit.models import build_model, weight_fingerprint
from kdkit.objectives import Batch, MultiTeacher
from kdkit.train import with_teacher_outputs


def test_first_difference_keeps_the_length_and_starts_at_zero():
    x = torch.tensor([[1.0, 3.0, 2.0, 2.0, 5.0]])
    assert views.first_difference(x).tolist() == [[0.0, 2.0, -1.0, 0.0, 3.0]]


def test_the_spectrum_forgets_where_a_pattern_sits():
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(x, shifts=7, dims=1)
    assert views.view_shape("spectrum", (40,)) == (21,)
    torch.testing.assert_close(views.spectrum_magnitude(shifted), views.spectrum_magnitude(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(views.first_difference(shifted), views.first_difference(x))


def test_a_viewed_network_reads_the_raw_signal_through_its_view():
    net = build_model("mlp", (21,), 10, seed=0, hidden=(8,))
    model = views.Viewed("spectrum", net)
    x = torch.randn(3, 40)
    torch.testing.assert_close(model(x), net(views.spectrum_magnitude(x)))
    with pytest.raises(KeyError, match="view"):
        views.Viewed("wavelet", net)


def _teacher_logits(n=16, teachers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"t{j}.logits": 3 * torch.randn(n, 10, generator=g) for j in range(teachers)}


def test_multi_teacher_confidence_weights_follow_each_teachers_probability_of_the_label():
    extras = _teacher_logits()
    y = torch.arange(16) % 10
    logits = torch.randn(16, 10, requires_grad=True)
    batch = Batch(torch.zeros(16, 40), y, None, extras)
    got = MultiTeacher(("t0", "t1", "t2"), T=2.0, alpha=0.7, weights="confidence")(logits, batch)
    zs = [extras[f"t{j}.logits"] for j in range(3)]
    mu = torch.stack([torch.softmax(z, dim=1)[torch.arange(16), y] for z in zs])
    expected = losses.multi_teacher_kd_loss(logits, zs, y, T=2.0, alpha=0.7, weights=mu)
    torch.testing.assert_close(got, expected)


def test_multi_teacher_rejects_settings_that_cannot_mean_anything():
    with pytest.raises(ValueError, match="one number per teacher"):
        MultiTeacher(("a", "b"), weights=(1.0,))
    with pytest.raises(KeyError, match="weights"):
        MultiTeacher(("a", "b"), weights="entropy")
    with pytest.raises(KeyError, match="combine"):
        MultiTeacher(("a",), combine="max")
    with pytest.raises(ValueError, match="cached tensor"):
        MultiTeacher(("a",))(torch.zeros(2, 10), Batch(torch.zeros(2, 40), torch.zeros(2, dtype=torch.long), None))


@pytest.fixture
def small_experiment(mnist1d, monkeypatch):
    """The experiment on 200 training signals, with untrained teachers and 2-epoch students: the
    pairing does not need trained networks."""
    data = mnist1d.replace(train=mnist1d.train.subset(torch.arange(200)))

    def fake_teacher(data_, name):
        view = multi_teacher.TEACHERS[name]["view"]
        net = build_model("mlp", views.view_shape(view, data_.input_shape), data_.num_classes,
                          seed=multi_teacher.TEACHERS[name]["seed"] + 50, hidden=(16,))
        index = list(multi_teacher.TEACHERS).index(name)          # different validation and test numbers
        return checkpoints.Checkpoint(views.Viewed(view, net), {"val_acc": 0.6 + index / 10, "test_acc": index / 10},
                                      from_cache=True)

    monkeypatch.setattr(multi_teacher, "teacher", fake_teacher)
    monkeypatch.setattr(multi_teacher, "REGIMES", {name: {**regime, "epochs": 2}
                                                   for name, regime in multi_teacher.REGIMES.items()})
    return data


def test_every_arm_starts_from_the_same_student_weights(mnist1d):
    fingerprints = {weight_fingerprint(multi_teacher.build_student(mnist1d, seed=100)) for _ in range(2)}
    assert len(fingerprints) == 1
    assert weight_fingerprint(multi_teacher.build_student(mnist1d, seed=101)) not in fingerprints


@pytest.mark.parametrize("regime", ["all", "tenth"])
def test_the_fused_students_are_the_single_teacher_students(small_experiment, regime):
    """The single-view arms are read from the fused run: each of its students must be the very run
    its arm would train alone (same settings, weights, batches and data), to the last digit."""
    data = small_experiment
    fused = multi_teacher.fused_students(data, seed=3, regime=regime)
    for name in multi_teacher.VIEW_TEACHERS:
        alone = multi_teacher.student_run(data, seed=3, regime=regime, **multi_teacher.arm_settings(name, regime))
        assert fused.test_metrics[f"train_loss/{name}"] == alone.history.last["train_loss"]
        assert fused.test_acc_per_output[name] == alone.test_acc
        assert fused.test_metrics[f"val_acc/{name}"] == alone.val_acc
        member = multi_teacher.arm_run(data, name, seed=3, regime=regime)
        assert (member.val_acc, member.test_acc) == (alone.val_acc, alone.test_acc)


def test_the_teachers_chosen_change_what_the_student_learns(small_experiment):
    data = small_experiment
    runs = {arm: multi_teacher.arm_run(data, arm, seed=3) for arm in ("labels", "raw_seed1", "views", "views, logit average")}
    losses_seen = {arm: r.history.last["train_loss"] for arm, r in runs.items()}
    assert len(set(losses_seen.values())) == len(runs), losses_seen


def test_accuracy_weights_are_the_teachers_validation_accuracies(small_experiment):
    settings = multi_teacher.arm_settings("views, accuracy weights")
    objective = multi_teacher.objective_for(small_experiment, settings.pop("teachers"), **settings)
    assert objective.weights == (0.6, 0.7, 0.8)        # validation, never test (0.0, 0.1, 0.2)


def test_the_playground_trains_the_teachers_ticked_with_their_weights(small_experiment):
    data = small_experiment
    seen = []

    class Watch:
        def on_fit_start(self, model, epochs):
            seen.append(epochs)

        def on_epoch_end(self, history, model):
            pass

        def on_fit_end(self, history):
            pass

    result = multi_teacher.playground_run(data, seed=3, use_raw=True, weight_raw=2.0, use_spectrum=True,
                                          weight_spectrum=0.5, use_difference=False, callbacks=[Watch()])
    assert "teachers=('raw', 'spectrum')" in result.config["objective"]
    assert "weights=(2.0, 0.5)" in result.config["objective"]
    nothing = multi_teacher.playground_run(data, seed=3, use_raw=True, weight_raw=0.0, callbacks=[Watch()])
    assert nothing.config["objective"] == "CrossEntropy()"
    with pytest.raises(ValueError, match="unknown playground settings"):
        multi_teacher.playground_run(data, seed=3, use_teacher9=True)


def test_teacher_outputs_are_cached_per_teacher(small_experiment):
    data = multi_teacher.with_teachers(small_experiment, ("raw", "spectrum"))
    assert set(data.train.extras) == {"raw.logits", "spectrum.logits"}
    direct = with_teacher_outputs({"raw": multi_teacher.teacher(small_experiment, "raw").model}, small_experiment)
    torch.testing.assert_close(data.val.extras["raw.logits"], direct.val.extras["raw.logits"])


def test_a_tenth_of_the_data_is_drawn_per_seed_with_the_teachers_outputs(small_experiment):
    data = multi_teacher.with_teachers(small_experiment, ("raw", "spectrum"))
    tenth = multi_teacher.training_split(data, "tenth", seed=100)
    assert len(tenth) == 20 and set(tenth.extras) == {"raw.logits", "spectrum.logits"}
    teacher = multi_teacher.teacher(small_experiment, "spectrum").model
    torch.testing.assert_close(tenth.extras["spectrum.logits"], teacher(tenth.x))   # each row its own signal's
    assert torch.equal(tenth.x, multi_teacher.training_split(data, "tenth", seed=100).x)
    assert not torch.equal(tenth.x, multi_teacher.training_split(data, "tenth", seed=101).x)
    assert multi_teacher.training_split(data, "all", seed=100) is data.train


def test_the_tenth_regime_trains_on_the_tenth(small_experiment, monkeypatch):
    seen = []
    fit = multi_teacher.fit

    def watched_fit(model, train, *args, **kwargs):
        seen.append((len(train), kwargs["lr"]))
        return fit(model, train, *args, **kwargs)

    monkeypatch.setattr(multi_teacher, "fit", watched_fit)
    multi_teacher.arm_run(small_experiment, "views", seed=3, regime="tenth")
    multi_teacher.arm_run(small_experiment, "views", seed=3, regime="all")
    assert seen == [(20, multi_teacher.REGIMES["tenth"]["lr"]), (200, multi_teacher.REGIMES["all"]["lr"])]


def test_a_changed_teacher_is_never_read_from_another_teachers_cache(small_experiment, monkeypatch):
    first = multi_teacher.arm_run(small_experiment, "raw_seed1", seed=3)
    fake = multi_teacher.teacher

    def other_teacher(data_, name):
        checkpoint = fake(data_, name)
        torch.nn.init.zeros_(next(checkpoint.model.parameters()))
        return checkpoint

    monkeypatch.setattr(multi_teacher, "teacher", other_teacher)
    again = multi_teacher.arm_run(small_experiment, "raw_seed1", seed=3)
    assert again.config["teacher_weights"] != first.config["teacher_weights"]
    assert again.history.last["train_loss"] != first.history.last["train_loss"]


def test_a_view_teachers_cache_key_names_the_views_code():
    assert len({views.view_source(name) for name in views.VIEWS}) == len(views.VIEWS)
