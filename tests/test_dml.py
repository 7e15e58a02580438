"""Deep Mutual Learning (notebook 04): the loss's variants, the official update order, the
twin pairing the claims rest on, the playground's settings, and the parallel runner that
fills the result cache."""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F

from kdkit import losses, objectives
from kdkit.data import DataSplits
from kdkit.experiments import dml, parallel
from kdkit.models import Cohort
from kdkit.storage import NotComputedYet, lookup_only
from kdkit.train import fit


def _logits(count: int, seed: int = 0, batch: int = 12, classes: int = 10) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [2 * torch.randn(batch, classes, generator=generator, dtype=torch.float64) for _ in range(count)]


def _labels(batch: int = 12, classes: int = 10) -> torch.Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(7))


# ------------------------------------------------------------------------------------------
# The loss and its variants
# ------------------------------------------------------------------------------------------

def test_ensemble_of_probabilities_has_exactly_the_gradient_of_pairwise_dml():
    z_self, *peers = _logits(4)
    z_self.requires_grad_(True)
    y = _labels()
    pairwise = losses.mutual_learning_loss(z_self, peers, y, target="pairwise")
    ensemble = losses.mutual_learning_loss(z_self, peers, y, target="ensemble")
    (g_pairwise,) = torch.autograd.grad(pairwise, z_self)
    (g_ensemble,) = torch.autograd.grad(ensemble, z_self)
    torch.testing.assert_close(g_pairwise, g_ensemble)
    # ...but the values differ by the peers' generalised Jensen-Shannon divergence
    probs = torch.stack([F.softmax(z, dim=1) for z in peers])
    entropy = lambda p: -(p * p.log()).sum(dim=-1)  # noqa: E731
    js = (entropy(probs.mean(dim=0)) - entropy(probs).mean(dim=0)).mean()
    torch.testing.assert_close(pairwise - ensemble, js)


def test_ensemble_of_logits_is_kd_to_the_softmax_of_the_mean_logits_and_differs_from_dml():
    z_self, *peers = _logits(3, seed=1)
    y = _labels()
    mean_logits = torch.stack(peers).mean(dim=0)
    expected = F.cross_entropy(z_self, y) + losses.distillation_kl(z_self, mean_logits, T=2.0)
    got = losses.mutual_learning_loss(z_self, peers, y, T=2.0, target="ensemble_logits")
    torch.testing.assert_close(got, expected)
    z = z_self.clone().requires_grad_(True)
    grads = [torch.autograd.grad(losses.mutual_learning_loss(z, peers, y, target=t), z)[0]
             for t in ("pairwise", "ensemble_logits")]
    assert (grads[0] - grads[1]).abs().max() > 1e-3


def test_weight_scales_the_mimicry_term_and_sum_drops_the_one_over_n_minus_one():
    z_self, *peers = _logits(4, seed=2)
    y = _labels()
    ce = F.cross_entropy(z_self, y)
    mean = losses.mutual_learning_loss(z_self, peers, y) - ce
    torch.testing.assert_close(losses.mutual_learning_loss(z_self, peers, y, weight=0.0), ce)
    torch.testing.assert_close(losses.mutual_learning_loss(z_self, peers, y, weight=0.25) - ce, 0.25 * mean)
    torch.testing.assert_close(losses.mutual_learning_loss(z_self, peers, y, peer_average="sum") - ce,
                               3 * mean)
    with pytest.raises(ValueError, match="weight"):
        objectives.MutualLearning(weight=-1.0)
    with pytest.raises(KeyError, match="peer_average"):
        objectives.MutualLearning(peer_average="max")


# ------------------------------------------------------------------------------------------
# The official code's order: a fresh batch per peer, the others already updated
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(mnist1d) -> DataSplits:
    """MNIST-1D cut small: 256 training signals, 100 for validation and for test."""
    return mnist1d.replace(train=mnist1d.train.subset(torch.arange(256)), val=mnist1d.val.subset(torch.arange(100)),
                           test=mnist1d.test.subset(torch.arange(100)))


def _pair(data: DataSplits) -> Cohort:
    return Cohort([dml.build_peer("mlp", data, dml.peer_init_seed(0, k)) for k in (1, 2)])


def test_alternating_order_lets_the_peers_take_turns_one_batch_each(small):
    """Two epochs of fit with order="alternating" against the official code's loop written out:
    peer 1 steps on batch 1, then peer 2 on batch 2 against the peer 1 that has just moved,
    and so on; the batches are fit's (one shuffle per epoch from the seed's generator)."""
    train = small.train.subset(torch.arange(64))
    cohort = _pair(small)
    manual = copy.deepcopy(cohort)
    fit(cohort, train, objective=objectives.MutualLearning(order="alternating"), epochs=2,
        batch_size=32, lr=1e-2)

    generator = torch.Generator().manual_seed(0)
    optimisers = {n: torch.optim.Adam(p.parameters(), lr=1e-2) for n, p in manual.peers.items()}
    manual.train()
    step = 0
    for _epoch in range(2):
        order = torch.randperm(len(train), generator=generator)
        for rows in (order[:32], order[32:]):
            name, other = ("peer1", "peer2") if step % 2 == 0 else ("peer2", "peer1")
            logits = manual(train.x[rows])
            loss = losses.mutual_learning_loss(logits[name], [logits[other]], train.y[rows])
            optimisers[name].zero_grad()
            loss.backward()
            optimisers[name].step()
            step += 1
    for p, q in zip(cohort.parameters(), manual.parameters()):
        torch.testing.assert_close(p, q)


def test_alternating_order_with_n_times_the_epochs_gives_each_peer_as_many_updates(small, mnist1d):
    """349 examples, batch 128: 3 steps an epoch, the last one partial. Simultaneous for 4 epochs
    and alternating for 8 must give each peer 12 gradient steps."""
    train = mnist1d.train.subset(torch.arange(349))
    steps = {}
    for order, epochs in (("simultaneous", 4), ("alternating", 8)):
        cohort = _pair(small)
        counted = {name: 0 for name in cohort.peers}
        for name, peer in cohort.peers.items():
            peer.net[1].weight.register_hook(lambda grad, name=name: counted.__setitem__(name, counted[name] + 1))
        fit(cohort, train, objective=objectives.MutualLearning(order=order), epochs=epochs, batch_size=128, lr=1e-2)
        steps[order] = counted
    expected = 4 * -(-len(train) // 128)
    assert steps["simultaneous"] == steps["alternating"] == {"peer1": expected, "peer2": expected}


# ------------------------------------------------------------------------------------------
# The pairing every claim rests on
# ------------------------------------------------------------------------------------------

TINY_RECIPE = {"epochs": 3, "lr": 0.01}


def test_a_cohort_with_mimicry_weight_zero_is_exactly_its_twins(small):
    """With weight 0 each peer trains on its labels alone, from its twin's weights, on its
    twin's batches: it must *be* its twin (so a non-zero difference is DML's doing)."""
    cohort = dml.cohort_run(small, ("mlp", "mlp"), seed=3, method=objectives.MutualLearning(weight=0.0),
                            recipe=TINY_RECIPE)
    for k in (1, 2):
        twin = dml.single_run(small, "mlp", seed=3, init_seed=dml.peer_init_seed(3, k), recipe=TINY_RECIPE)
        assert cohort.test_acc_per_output[f"peer{k}"] == twin.test_acc
        assert cohort.test_metrics[f"entropy/peer{k}"] == pytest.approx(twin.test_metrics["entropy/net"], abs=1e-6)
        assert cohort.history.series(f"val_acc/peer{k}") == twin.history.series("val_acc")


def test_scarce_regime_draws_a_stratified_tenth_per_seed(mnist1d):
    data = mnist1d
    a, b = dml.training_split(data, "scarce", 1), dml.training_split(data, "scarce", 2)
    assert len(a) == len(b) == pytest.approx(0.1 * len(data.train), abs=10)
    assert not torch.equal(a.x, b.x)
    assert torch.bincount(a.y, minlength=10).min() >= 25
    assert dml.training_split(data, "full", 1) is data.train


def test_mixed_cohort_takes_the_most_epochs_the_lowest_rate_and_alternates_architectures():
    assert dml.recipe_for(("mlp", "cnn"), "scarce") == {"epochs": 60, "lr": 0.02}
    assert dml.recipe_for(("cnn", "cnn"), "full") == dml.RECIPES[("cnn", "full")]
    assert dml.cohort_of("MLP + CNN", 3) == ("mlp", "cnn", "mlp")
    assert dml.cohort_of("CNN + CNN", 2) == ("cnn", "cnn")


def test_playground_settings_that_change_nothing_do_not_retrain():
    base = {"cohort": "MLP + MLP", "size": 2, "T": 4.0, "weight": 0.0, "order": "alternating",
            "regime": "full", "seed": 0}
    assert dml.effective_settings(base) == dml.effective_settings({**base, "T": 1.0})
    assert dml.effective_settings(base) != dml.effective_settings({**base, "order": "simultaneous"})
    assert dml.effective_settings({**base, "weight": 1.0}) != dml.effective_settings({**base, "weight": 1.0, "T": 1.0})


def test_tuned_settings_come_from_their_grids_and_seeds_are_disjoint():
    for (what, _arch, _regime), settings in dml.TUNED.items():
        assert settings in (dml.DML_GRID if what == "dml" else dml.KD_GRID)
    seed_sets = [set(dml.TUNING_SEEDS), set(dml.REPORTING_SEEDS), set(dml.CHECK_SEEDS)]
    assert all(not a & b for i, a in enumerate(seed_sets) for b in seed_sets[i + 1:])
    assert set(dml.ROBUST_CLAIMS) <= set(dml.CLAIMS) | {f"C4.1 {a} {r}" for a in ("MLP", "CNN") for r in dml.FRACTIONS} \
        | {f"C4.{n} {r}" for n in (4, 5) for r in dml.FRACTIONS}


# ------------------------------------------------------------------------------------------
# Computing the missing runs in worker processes
# ------------------------------------------------------------------------------------------

def test_lookup_only_refuses_to_compute_and_says_so(small):
    with lookup_only(), pytest.raises(NotComputedYet):
        dml.single_run(small, "mlp", seed=11, recipe=TINY_RECIPE)
    assert parallel.missing([functools.partial(dml.single_run, small, "mlp", seed=11, recipe=TINY_RECIPE)])


def test_workers_fill_the_cache_with_the_numbers_this_process_would_compute(small):
    calls = [functools.partial(dml.single_run, small, "mlp", seed=s, recipe=TINY_RECIPE) for s in (21, 22, 23)]
    assert parallel.compute_missing(calls, workers=2) == 3
    assert parallel.missing(calls) == []                       # now all on disk
    assert parallel.compute_missing(calls, workers=2) == 0     # and nothing starts a worker
    from_workers = [call().test_acc for call in calls]
    # The twin of seed 21 computed by a worker equals peer 1 of a weight-0 cohort trained here.
    here = dml.cohort_run(small, ("mlp", "mlp"), seed=21, method=objectives.MutualLearning(weight=0.0),
                          recipe=TINY_RECIPE)
    assert here.test_acc_per_output["peer1"] == from_workers[0]


def test_an_error_in_a_worker_is_raised_here(small):
    calls = [functools.partial(dml.single_run, small, "no-such-net", seed=s, recipe=TINY_RECIPE) for s in (31, 32)]
    with pytest.raises(RuntimeError, match="no-such-net"):
        parallel.compute_missing(calls, workers=2)


def test_offline_kd_reuses_the_twin_trained_for_c41_as_its_teacher(small):
    """A twin trained once (labels) is kept as a checkpoint; the teacher of offline KD loads it."""
    recipe = dml.RECIPES[("mlp", "full")]
    twin = dml.single_run(small, "mlp", seed=5, init_seed=dml.peer_init_seed(5, 2))
    with lookup_only():                                          # would raise if it had to train
        teacher = dml.trained_twin(small, "mlp", seed=5, k=2, regime="full")
    from kdkit.train import evaluate
    assert evaluate(teacher, small.test)["acc"] == twin.test_acc
    assert recipe["epochs"] == twin.config["epochs"]


def test_run_all_returns_every_result_in_the_order_of_the_calls(small):
    calls = [functools.partial(dml.single_run, small, "mlp", seed=s, recipe=TINY_RECIPE) for s in (41, 42, 43)]
    first = parallel.run_all(calls[:1], workers=2)                 # one missing call: computed here
    results = parallel.run_all(calls, workers=2)                    # two more, by the workers
    assert [r.config["seed"] for r in results] == [41, 42, 43]
    assert results[0].test_acc == first[0].test_acc
    assert parallel.missing(calls) == []
