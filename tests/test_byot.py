"""Be Your Own Teacher (notebook 05): the self-distillation step against the loss written out,
what each switch turns off, the exits' cost, early exit, and the pairing the claims rest on."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdkit import objectives
from kdkit.experiments import byot
from kdkit.models import build_model, count_multiply_adds, weight_fingerprint
from kdkit.objectives import Batch, SelfDistillation

LENGTH, CLASSES = 40, 10


def network(seed: int = 0):
    return build_model("multi_exit", (LENGTH,), CLASSES, seed=seed, backbone="resnet", **byot.BACKBONE)


def batch(size: int = 16, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(size, LENGTH, generator=generator),
                 torch.randint(0, CLASSES, (size,), generator=generator), None)


def gradients(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def written_out(model, method, b, *, alpha, T, beta):
    """The BYOT loss in a few lines, as the notebook writes it."""
    outputs, features = model.forward_with_features(b.x)
    teacher, target = outputs["final"].detach(), features["embedding"].detach()
    loss = F.cross_entropy(outputs["final"], b.y)
    for name in model.exits:
        z = outputs[name]
        kl = F.kl_div(F.log_softmax(z / T, dim=1), F.softmax(teacher / T, dim=1), reduction="batchmean")
        hint = F.mse_loss(method.regressors[name](features[name].mean(dim=2)), target) if beta else 0.0
        loss = loss + (1 - alpha) * F.cross_entropy(z, b.y) + alpha * T * T * kl + beta * hint
    return loss


def test_self_distillation_step_matches_the_loss_written_out_in_value_and_gradient():
    model, b = network(), batch()
    model.train()
    method = SelfDistillation(model, alpha=0.3, T=3.0, beta=0.5)
    expected = written_out(model, method, b, alpha=0.3, T=3.0, beta=0.5)
    got = method.step(model, b, lambda loss: None).loss
    torch.testing.assert_close(got, expected)
    want, have = gradients(model, expected), gradients(model, got)
    assert want.keys() == have.keys()
    for name in want:
        torch.testing.assert_close(have[name], want[name], msg=name)


def test_the_deepest_exit_is_taught_by_labels_only_its_logits_and_feature_are_detached():
    # The last stage and the classifier feed only the deepest exit: with its logits and feature
    # detached as targets, the KL and the hint must not reach them.
    model, b = network(), batch()
    with_kd = SelfDistillation(model, alpha=0.9, T=4.0, beta=1.0).step(model, b, lambda loss: None)
    deepest_parts = [*model.backbone.stages[2].parameters(), *model.backbone.classifier.parameters()]
    got = torch.autograd.grad(with_kd.loss, deepest_parts)
    want = torch.autograd.grad(F.cross_entropy(model(b.x)["final"], b.y), deepest_parts)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_without_deep_supervision_the_kl_and_the_hint_still_reach_the_backbone():
    model, b = network(), batch()
    probes_only = SelfDistillation(model, alpha=0.0, beta=0.0, deep_supervision=False).step(model, b, lambda _: None)
    with_kd = SelfDistillation(model, alpha=0.5, T=2.0, beta=1.0, deep_supervision=False).step(model, b, lambda _: None)
    first_stage = list(model.backbone.stages[0].parameters())
    g_probes = torch.autograd.grad(probes_only.loss, first_stage)
    g_kd = torch.autograd.grad(with_kd.loss, first_stage)
    assert any((a - c).abs().max() > 1e-6 for a, c in zip(g_probes, g_kd))


def test_without_deep_supervision_the_exits_are_probes_and_the_backbone_trains_as_plain():
    model, b = network(), batch()
    plain = SelfDistillation(model, alpha=0.0, beta=0.0, deep_supervision=False).step(model, b, lambda _: None)
    g_plain = gradients(model, plain.loss)
    g_final_only = gradients(model, F.cross_entropy(model(b.x)["final"], b.y))
    for name, grad in g_final_only.items():
        torch.testing.assert_close(g_plain[name], grad, msg=name)
    assert {n for n in g_plain if n.startswith("exits.")} == {
        f"exits.{e}.{p}" for e in model.exits for p in ("weight", "bias")}   # the probes do learn


def test_the_two_codes_conventions_t_squared_and_the_deepest_weight():
    model, b = network(), batch()
    with torch.no_grad():
        base = SelfDistillation(model, alpha=0.4, T=3.0).step(model, b, lambda _: None)
        no_t2 = SelfDistillation(model, alpha=0.4, T=3.0, t_squared=False).step(model, b, lambda _: None)
        scaled = SelfDistillation(model, alpha=0.4, T=3.0, scale_final=True).step(model, b, lambda _: None)
    torch.testing.assert_close(base.loss - no_t2.loss, 0.4 * base.metrics["kd"] * (1 - 1 / 9))
    torch.testing.assert_close(base.loss - scaled.loss, 0.4 * base.metrics["ce"])


def test_self_distillation_rejects_what_it_cannot_train():
    with pytest.raises(ValueError, match="MultiExit"):
        SelfDistillation(build_model("resnet", (LENGTH,), CLASSES))
    with pytest.raises(ValueError, match="alpha"):
        SelfDistillation(network(), alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        SelfDistillation(network(), beta=-1)
    assert "alpha=0.3, T=3" in repr(SelfDistillation(network()))


def test_regressors_exist_only_with_a_hint_and_leave_the_networks_weights_alone():
    model = network(seed=5)
    before = weight_fingerprint(model)
    assert len(list(SelfDistillation(model, beta=0.0).parameters())) == 0
    assert len(list(SelfDistillation(model, beta=0.1).parameters())) == 4
    assert weight_fingerprint(model) == before == weight_fingerprint(network(seed=5))


def test_each_exit_costs_its_stages_and_its_head_and_the_final_exit_the_whole_backbone():
    model = network()
    costs = model.exit_multiply_adds((LENGTH,))
    assert list(costs) == ["stage1", "stage2", "final"]
    assert costs["final"] == count_multiply_adds(model.backbone, (LENGTH,))
    assert costs["stage1"] < costs["stage2"] < costs["final"]
    twin = byot.shallow_twin(_data_like(), "stage1", 0)
    assert costs["stage1"] == count_multiply_adds(twin, (LENGTH,))
    on_the_way = byot.early_exit_costs(model, (LENGTH,))
    assert on_the_way["final"] == costs["final"] + sum(h.weight.numel() for h in model.exits.values())


def _data_like():
    class Shapes:
        input_shape, num_classes = (LENGTH,), CLASSES
    return Shapes()


def test_a_network_of_an_exits_depth_starts_from_the_same_weights_as_that_exit():
    model = network(seed=3)
    twin = byot.shallow_twin(_data_like(), "stage2", 3)
    x = batch().x
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x)["stage2"])


def test_early_exit_stops_at_the_first_confident_exit():
    outputs = {"stage1": torch.tensor([[5.0, 0.0], [0.0, 0.1]]),
               "final": torch.tensor([[0.0, 5.0], [0.0, 5.0]])}
    costs = {"stage1": 10, "final": 100}
    answer, cost = byot.early_exit(outputs, costs, 0.9)
    assert answer.tolist() == [0, 1] and cost.tolist() == [10.0, 100.0]
    answer, cost = byot.early_exit(outputs, costs, 0.0)
    assert answer.tolist() == [0, 1] and cost.tolist() == [10.0, 10.0]
    answer, cost = byot.early_exit(outputs, costs, 1.0)
    assert cost.tolist() == [100.0, 100.0]
    metrics = byot.anytime_metrics(outputs, torch.tensor([0, 0]), costs)
    assert metrics["anytime/acc@0.00"] == 0.5 and metrics["anytime/macs@0.00"] == 10.0
    assert metrics["anytime/macs@1.00"] == 100.0


def test_ensembles_average_probabilities_or_logits():
    outputs = {"a": torch.tensor([[3.0, 0.0]]), "b": torch.tensor([[0.0, 1.0]]), "c": torch.tensor([[0.0, 1.0]])}
    result = byot.ensemble_accuracies(outputs, torch.tensor([1]))
    assert result == {"ensemble/probs": 1.0, "ensemble/logits": 0.0}


def test_the_arms_differ_in_their_terms_and_the_distilling_arms_train_with_ds_recipe():
    plain, ds = byot.arm_settings("plain", "full"), byot.arm_settings("ds", "full")
    assert plain == {**ds, "deep_supervision": False}
    kd, full = byot.arm_settings("ds+kd", "scarce"), byot.arm_settings("byot", "scarce")
    assert kd["alpha"] > 0 and kd["beta"] == 0 and full["beta"] > 0
    for regime in byot.FRACTIONS:
        assert byot.recipe_of("byot", regime) == byot.recipe_of("ds+kd", regime) == byot.recipe_of("ds", regime)
        assert byot.recipe_of("stage1", regime) == byot.RECIPES[("stage1", regime)]


def test_unwatched_runs_validate_at_their_last_epoch_and_curves_at_every_epoch(mnist1d):
    recipe = {"epochs": 2, "lr": 0.01}
    last_only = byot.network_run(mnist1d, seed=3, regime="scarce", recipe=recipe)
    curves = byot.network_run(mnist1d, seed=3, regime="scarce", recipe=recipe, curves=True)
    assert last_only.history.epochs_of("val_acc") == [2] and curves.history.epochs_of("val_acc") == [1, 2]
    assert last_only.test_acc_per_output == curves.test_acc_per_output


def test_playground_settings_that_change_nothing_are_dropped():
    settings = {"deep_supervision": True, "kd": False, "hint": False, "alpha": 0.3, "T": 3.0, "beta": 0.1,
                "regime": "full", "seed": 0}
    effective = byot.effective_settings(settings)
    assert effective["alpha"] is None and effective["T"] is None and effective["beta"] is None


def test_self_distillation_is_a_training_step_fit_can_run(mnist1d):
    small = mnist1d.train.subset(torch.arange(256))
    model = build_model("multi_exit", mnist1d.input_shape, mnist1d.num_classes, seed=0, backbone="resnet",
                        **byot.BACKBONE)
    method = SelfDistillation(model, alpha=0.3, T=3.0, beta=0.1)
    assert objectives.is_training_step(method)
    from kdkit.train import fit
    history = fit(model, small, mnist1d.val, objective=method, epochs=2, lr=1e-2)
    assert {"train_kd", "train_hint", "val_acc/stage1", "val_acc/final"} <= set(history.last)


def test_an_unknown_regime_is_named_before_any_lookup(mnist1d):
    with pytest.raises(KeyError, match="unknown regime 'half'.*full, scarce"):
        byot.network_run(mnist1d, regime="half")
    with pytest.raises(KeyError, match="unknown regime 'half'"):
        byot.depth_run(mnist1d, "stage1", seed=0, regime="half")
