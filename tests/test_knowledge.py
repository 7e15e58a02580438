"""Notebook 08's machinery: the one-stage feature/relation training step, the arms' settings, the
cross-modal view, and the playground's inputs."""
from __future__ import annotations

import pytest
import torch

from kdkit import losses, objectives
from kdkit.data import DataSplits, Split
from kdkit.experiments import knowledge
from kdkit.models import Adaptor, build_model
from kdkit.objectives import Batch, KnowledgeTransfer
from kdkit.train import fit, with_teacher_logits, with_teacher_outputs

LENGTH, CLASSES = 40, 10


def toy_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    split = lambda m: Split(torch.randn(m, LENGTH, generator=g), torch.randint(0, CLASSES, (m,), generator=g))  # noqa: E731
    return DataSplits("toy", split(n), split(48), split(48), CLASSES, tuple(str(c) for c in range(CLASSES)))


def toy_teacher():
    return build_model("cnn", (LENGTH,), CLASSES, seed=3, channels=(32, 32, 32), kernel_size=5).eval()


def taught_toy():
    teacher = toy_teacher()
    data = toy_data()
    return with_teacher_logits(teacher, with_teacher_outputs({"teacher": teacher}, data,
                                                             features=knowledge.TEACHER_FEATURES))


def one_batch(data, rows=32):
    split = data.train
    return Batch(split.x[:rows], split.y[:rows], split.teacher_logits[:rows],
                 {k: v[:rows] for k, v in split.extras.items()})


def cnn8(seed=0):
    return build_model("cnn", (LENGTH,), CLASSES, seed=seed, channels=(8, 8, 8), kernel_size=5)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_the_loss_is_the_response_term_plus_beta_times_the_method(alpha):
    data, student = taught_toy(), cnn8()
    batch = one_batch(data)
    method = KnowledgeTransfer("similarity", beta=7.0, layers={"conv3": "teacher.conv3"}, alpha=alpha, T=4.0)
    out = method.step(student, batch, lambda _loss: None)
    logits, features = student.forward_with_features(batch.x)
    response = (losses.kd_loss(logits, batch.teacher_logits, batch.y, T=4.0, alpha=alpha) if alpha
                else losses.cross_entropy(logits, batch.y))
    sp = losses.similarity_preserving_loss(features["conv3"], batch.extras["teacher.conv3"])
    torch.testing.assert_close(out.loss, response + 7.0 * sp)
    torch.testing.assert_close(out.metrics["similarity"], sp.detach())


def test_attention_sums_over_the_layer_pairs_and_relations_flatten_maps():
    data, student = taught_toy(), cnn8()
    batch = one_batch(data)
    pairs = {f"conv{i}": f"teacher.conv{i}" for i in (1, 2, 3)}
    out = KnowledgeTransfer("attention", beta=1.0, layers=pairs).step(student, batch, lambda _loss: None)
    _, f = student.forward_with_features(batch.x)
    expected = sum(losses.attention_transfer_loss(f[s], batch.extras[t]) for s, t in pairs.items())
    torch.testing.assert_close(out.metrics["attention"], expected.detach())
    out = KnowledgeTransfer("pkt", beta=1.0, layers={"conv3": "teacher.conv3"}).step(student, batch, lambda _l: None)
    torch.testing.assert_close(out.metrics["pkt"], losses.pkt_loss(f["conv3"].flatten(1),
                                                                    batch.extras["teacher.conv3"].flatten(1)).detach())


def test_the_regressor_trains_with_the_student():
    data = taught_toy()
    student = cnn8()
    regressor = Adaptor((8, 10), (32, 10))
    method = KnowledgeTransfer("fitnet", beta=10.0, layers={"conv2": "teacher.conv2"}, adaptor=regressor)
    before = regressor.map.weight.detach().clone()
    history = fit(student, data.train, data.val, objective=method, epochs=2, batch_size=32, lr=1e-2)
    assert not torch.equal(before, regressor.map.weight)
    assert {"train_response", "train_fitnet"} <= set(history.last)


@pytest.mark.parametrize("method, layers", [
    ("fitnet", {"conv2": "conv2"}), ("attention", {"conv1": "conv1", "conv3": "conv3"}),
    ("similarity", {"conv3": "conv3"}), ("rkd", {"embedding": "embedding"}), ("pkt", {"embedding": "embedding"}),
    ("cc", {"embedding": "embedding"})])
def test_no_gradient_reaches_the_teachers_outputs(method, layers):
    data, student = taught_toy(), cnn8()
    batch = one_batch(data)
    extras = {k: v.clone().requires_grad_(True) for k, v in batch.extras.items()}
    logits = batch.teacher_logits.clone().requires_grad_(True)
    adaptor = Adaptor((8, 10), (32, 10)) if method == "fitnet" else None
    step = KnowledgeTransfer(method, beta=1.0, layers={s: f"teacher.{t}" for s, t in layers.items()},
                             adaptor=adaptor, alpha=0.5, T=4.0)
    out = step.step(student, Batch(batch.x, batch.y, logits, extras), lambda _loss: None)
    out.loss.backward()
    assert logits.grad is None and all(t.grad is None for t in extras.values())
    assert all(p.grad is not None for p in student.parameters())


def test_a_last_batch_too_small_for_relations_trains_on_the_labels_alone():
    data, student = taught_toy(), cnn8()
    batch = one_batch(data, rows=2)
    out = KnowledgeTransfer("rkd", beta=1.0, layers={"embedding": "teacher.embedding"}).step(student, batch, lambda _l: None)
    torch.testing.assert_close(out.loss, losses.cross_entropy(student(batch.x), batch.y))
    # ... but a feature method compares each example with itself: it keeps its term
    out = KnowledgeTransfer("attention", beta=1.0, layers={"conv1": "teacher.conv1"}).step(student, batch, lambda _l: None)
    assert out.metrics["attention"] > 0


def test_bad_settings_are_named():
    with pytest.raises(KeyError, match="unknown method 'fsp'"):
        KnowledgeTransfer("fsp", beta=1.0, layers={"conv3": "teacher.conv3"})
    with pytest.raises(ValueError, match="beta"):
        KnowledgeTransfer("pkt", beta=-1.0, layers={"conv3": "teacher.conv3"})
    with pytest.raises(ValueError, match="at least one"):
        KnowledgeTransfer("pkt", beta=1.0, layers={})
    with pytest.raises(ValueError, match="one pair"):
        KnowledgeTransfer("similarity", beta=1.0, layers={"conv1": "teacher.conv1", "conv3": "teacher.conv3"})
    with pytest.raises(ValueError, match="adaptor"):
        KnowledgeTransfer("pkt", beta=1.0, layers={"conv3": "teacher.conv3"}, adaptor=Adaptor((8,), (32,)))
    data = taught_toy()
    method = KnowledgeTransfer("pkt", beta=1.0, layers={"hidden9": "teacher.conv3"})
    with pytest.raises(ValueError, match="hidden9"):
        method.step(cnn8(), one_batch(data), lambda _l: None)
    assert "beta=1.0" in repr(method) and "alpha" not in repr(method)
    # the repr is a cache key: weights that differ anywhere must give different keys
    assert repr(KnowledgeTransfer("pkt", beta=1_000_000.0, layers={"conv3": "teacher.conv3"})) != \
        repr(KnowledgeTransfer("pkt", beta=1_000_001.0, layers={"conv3": "teacher.conv3"}))
    assert set(objectives.TRANSFER_LOSSES) == set(knowledge.METHODS)


def test_every_arm_has_tuned_settings_and_plus_kd_arms_carry_kds():
    for student in knowledge.STUDENTS:
        for arm in knowledge.arms(student):
            settings = knowledge.arm_settings(student, arm)
            if arm.endswith(" + kd"):
                assert {k: settings[k] for k in ("alpha", "T")} == knowledge.TUNED[(student, "kd")]
                assert settings["beta"] in knowledge.BETA_GRID[settings["method"]]
            elif arm not in ("labels", "kd"):
                assert settings["beta"] in knowledge.BETA_GRID[arm] and "alpha" not in settings
    assert "attention" not in knowledge.arms("mlp"), "the MLP has no feature map to attend with"
    for (student, method), tuned in knowledge.TUNED_UNTRAINED.items():      # the control has its own beta
        assert knowledge.arm_settings(student, method, untrained_teacher=True) == {"method": method, **tuned}
        assert tuned["beta"] in knowledge.BETA_GRID[method]
    assert set(knowledge.TUNED_UNTRAINED) == {(s, m) for s in knowledge.STUDENTS for m in knowledge.LAYERS[s]}


def test_a_seed_draws_the_same_regressor_in_every_run(mnist1d):
    first = knowledge.objective_for(mnist1d, "cnn8", "fitnet", seed=4, beta=10.0)
    again = knowledge.objective_for(mnist1d, "cnn8", "fitnet", seed=4, beta=10.0)
    other = knowledge.objective_for(mnist1d, "cnn8", "fitnet", seed=5, beta=10.0)
    assert torch.equal(first.adaptor.map.weight, again.adaptor.map.weight)
    assert not torch.equal(first.adaptor.map.weight, other.adaptor.map.weight)
    assert first.adaptor.map.weight.shape == (32, 8, 1)                 # 1x1 convolution, 8 -> 32 channels


def test_the_degraded_view_is_shorter_noisy_and_fixed():
    x = torch.randn(500, LENGTH)
    seen = knowledge.degraded(x, seed=1)
    assert seen.shape == (500, LENGTH // knowledge.DEGRADATION["pool"])
    torch.testing.assert_close(seen, knowledge.degraded(x, seed=1))
    pooled = x.reshape(500, -1, knowledge.DEGRADATION["pool"]).mean(dim=2)
    assert abs(float((seen - pooled).std()) - knowledge.DEGRADATION["noise"]) < 0.02
    assert not torch.equal(seen, knowledge.degraded(x, seed=2))


def test_cross_modal_students_see_the_degraded_view_and_the_clean_views_teacher(mnist1d):
    view = knowledge.cross_modal_data(mnist1d)
    teacher = knowledge.teacher(mnist1d).model.eval()
    with torch.no_grad():
        torch.testing.assert_close(view.test.teacher_logits, teacher(mnist1d.test.x))
    assert view.train.x.shape[1] == 10 and torch.equal(view.train.y, mnist1d.train.y)
    unseen = knowledge.unseen_signals(mnist1d)
    assert len(unseen) == len(mnist1d.train) and not bool((unseen.y >= 0).any()), "nobody labelled them"
    assert unseen.x.shape[1] == 10 and unseen.teacher_logits.shape == (len(unseen), 10)
    seen = {tuple(row) for row in view.train.x.round(decimals=4).tolist()}
    assert not any(tuple(row) in seen for row in unseen.x.round(decimals=4).tolist()), "fresh signals"
    run = knowledge.cross_modal_run(mnist1d, "teacher, no labels", seed=0, epochs=1, lr=0.01)
    assert run.config["labels"] is False and 0 <= run.test_acc <= 1


def test_the_playground_pairs_layers_and_explains_what_cannot_run(mnist1d):
    assert knowledge.playground_layers("cnn8", "similarity", "as ranked") is None
    assert knowledge.playground_layers("cnn8", "similarity", "conv1") == {"conv1": "conv1"}
    assert knowledge.playground_layers("mlp", "pkt", "conv2") == {"embedding": "conv2"}
    with pytest.raises(ValueError, match="no feature map"):
        knowledge.playground_layers("mlp", "attention", "conv1")
    with pytest.raises(ValueError, match="positions"):
        knowledge.playground_layers("cnn8", "attention", "embedding")
    with pytest.raises(ValueError, match="no feature map"):
        knowledge.playground_run(mnist1d, student="mlp", method="attention")
    with pytest.raises(ValueError, match="alpha"):
        knowledge.playground_run(mnist1d, method="kd", alpha=0.0)
    with pytest.raises(ValueError, match="vector"):
        knowledge.playground_run(mnist1d, student="mlp", method="fitnet", teacher_layer="conv2")


def test_the_playground_ignores_the_settings_that_change_nothing():
    base = {"student": "cnn8", "beta": 10.0, "alpha": 0.0, "T": 4.0, "teacher_layer": "conv1", "seed": 0}
    assert "T" not in knowledge.playground_effective({**base, "method": "pkt"})
    assert knowledge.playground_effective({**base, "method": "pkt", "alpha": 0.5})["T"] == 4.0
    assert set(knowledge.playground_effective({**base, "method": "labels"})) == {"student", "method", "seed"}
    assert "beta" not in knowledge.playground_effective({**base, "method": "kd", "alpha": 0.5})


def test_the_figures_student_is_the_run_the_ranking_reads(mnist1d):
    run = knowledge.arm_run(mnist1d, "mlp", "similarity", seed=100)
    model = knowledge.trained_student(mnist1d, "mlp", "similarity", seed=100)
    with torch.no_grad():
        accuracy = float((model(mnist1d.test.x).argmax(dim=1) == mnist1d.test.y).float().mean())
    assert accuracy == pytest.approx(run.test_acc, abs=1e-9)
