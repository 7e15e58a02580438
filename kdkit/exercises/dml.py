"""Exercises for the notebook on Deep Mutual Learning (Zhang, Xiang, Hospedales & Lu, CVPR 2018),
each with a checker.

1. :func:`check_peer_loss` - write one peer's DML loss at T = 1: its cross-entropy plus the mean,
   over the other peers, of ``KL(p_l || p_k)``, the other peers' predictions held constant;
2. :func:`check_mutual_update` - spot the gradient leak in :func:`leaky_mutual_step`, then write
   the correct simultaneous update of two peers that share one optimizer;
3. :func:`check_ensemble_gap` - compute, from the other peers alone, how much the pairwise target
   (DML) and the averaged target (DML_e) differ for a peer: a quantity that does not involve
   that peer, so both targets give it the same gradient (:func:`ensemble_gap_demo` shows it);
4. :func:`check_prediction` - predict, before running it, whether a DML peer beats its
   independently trained twin;
5. :func:`check_curve_reading` - read the measured comparison: which arm is higher, the DML peers
   or the independent networks, or can these seeds not tell?

:func:`solution` returns the instructor's answer to an exercise by number, so that a student
does not see it by accident while scrolling.

A checker calls the learner's function on fixed random inputs, compares it with kdkit's
reference and, when they differ, names the likely mistake. It returns a :class:`Feedback`,
truthy when the answer is right, displayed as its message. A wrong answer, or an exception
inside the learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdkit import losses
from kdkit.exercises.feedback import (Feedback, call_answer, check_comparison_reading, check_prediction_against,
                                      gradient_problem, solution_text, tensor_answer, tensors_close)
from kdkit.experiments.runs import Comparison

Tensor = torch.Tensor

BATCH, CLASSES = 16, 10
_PEER_COUNTS = (1, 3)        # other peers in exercise 1: with one, a sum and a mean are the same
_GAP_PEER_COUNTS = (2, 3)    # other peers in exercise 3: with one, the gap is 0 whatever one writes


_call = tensor_answer  # the learner's function called safely: a tensor, or Feedback saying why not


def _close(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    return tensors_close(a, b, rtol=rtol, atol=atol)


def _logits(count: int, seed: int, scale: float = 2.0) -> list[Tensor]:
    """``count`` (BATCH, CLASSES) float64 logits, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64) for _ in range(count)]


def _labels(seed: int = 0) -> Tensor:
    return torch.randint(0, CLASSES, (BATCH,), generator=torch.Generator().manual_seed(seed))


def _kl(p: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-example ``KL(p || q)`` from p and both log-probabilities, shape (B,)."""
    return (p * (log_p - log_q)).sum(dim=1)


def _entropy(p: Tensor) -> Tensor:
    """Per-example entropy in nats, shape (B,); 0 log 0 counts as 0."""
    return -(p * p.clamp_min(1e-300).log()).sum(dim=1)


# --------------------------------------------------------------------------------------
# Exercise 1: one peer's loss
# --------------------------------------------------------------------------------------

def _peer_loss_variants(z_self: Tensor, z_peers: Sequence[Tensor], y: Tensor) -> list[tuple[str, Tensor]]:
    """The usual wrong versions of peer k's loss (float64), each with the mistake it makes."""
    z_self, z_peers = z_self.detach().double(), [z.detach().double() for z in z_peers]
    log_p_k = F.log_softmax(z_self, dim=1)
    p_k = log_p_k.exp()
    logs = [F.log_softmax(z, dim=1) for z in z_peers]
    ce = F.cross_entropy(z_self, y)
    kl = torch.stack([_kl(log_l.exp(), log_l, log_p_k).mean() for log_l in logs])      # KL(p_l || p_k)
    reversed_kl = torch.stack([_kl(p_k, log_p_k, log_l).mean() for log_l in logs])      # KL(p_k || p_l)
    # F.kl_div(p_k, p_l) with probabilities as input: sum p_l (log p_l - p_k), no log on p_k
    no_log = torch.stack([(log_l.exp() * (log_l - p_k)).sum(dim=1).mean() for log_l in logs])
    B, K = z_self.shape
    return [
        ("the KL divergence is the wrong way round: KL(p_k || p_l) instead of KL(p_l || p_k). The other "
         "peer is the target: F.kl_div(input, target) takes *your* peer's log-probabilities as input and "
         "the other peer's probabilities as target", ce + reversed_kl.mean()),
        ("the KL is averaged over the classes as well as the examples (nn.KLDivLoss and F.kl_div default "
         "to reduction=\"mean\", which divides by B*K, so the mimicry term is K times too weak); use "
         "reduction=\"batchmean\"", ce + kl.mean() / K),
        ("the KL is summed over the batch (reduction=\"sum\"), not averaged: the mimicry term is B times "
         "too strong next to the cross-entropy; use reduction=\"batchmean\"", ce + kl.mean() * B),
        ("the whole loss is summed over the batch: both terms are B times the batch mean",
         B * (ce + kl.mean())),
        ("you summed the KL terms over the other peers; the paper's loss for a cohort of more than two "
         "averages them, 1/(n-1) sum over l != k (the authors' TensorFlow code sums them: a different "
         "weighting; this exercise asks for the paper's form)", ce + kl.sum()),
        ("the cross-entropy on the labels is missing: each peer learns from the labels *and* from "
         "its peers", kl.mean()),
        ("the mimicry term is missing: this is the cross-entropy alone, as for a network trained "
         "on its own", ce),
        ("the KL is computed from probabilities where F.kl_div expects log-probabilities: its input "
         "must be log_softmax(z_self), not softmax(z_self)", ce + no_log.mean()),
        ("the KL is computed from probabilities where F.kl_div expects log-probabilities (its input must "
         "be log_softmax(z_self)), and averaged over classes too (use reduction=\"batchmean\")",
         ce + no_log.mean() / K),
    ]


def check_peer_loss(fn: Callable[[Tensor, Sequence[Tensor], Tensor], Tensor]) -> Feedback:
    """Check ``fn(z_self, z_peers, y)``: peer k's DML loss at T = 1, a scalar tensor.

    ``z_self`` (B, K) are peer k's logits, ``z_peers`` a list of the other peers' (B, K) logits,
    ``y`` (B,) the labels. The answer must equal :func:`kdkit.losses.mutual_learning_loss`,
    ``CE(z_k, y) + 1/(n-1) sum_{l != k} KL(p_l || p_k)``, in value and in gradient w.r.t. ``z_self``,
    and send no gradient to the other peers. Tried with 1 and with 3 other peers.
    """
    for seed, count in enumerate(_PEER_COUNTS):
        z_self, *z_peers = (z.requires_grad_(True) for z in _logits(1 + count, seed=seed))
        y = _labels(seed)
        out = _call(fn, z_self, list(z_peers), y.clone())
        if isinstance(out, Feedback):
            return out
        if out.numel() != 1:
            return Feedback(False, f"return one number (a 0-d tensor, the batch mean), got shape {tuple(out.shape)}")
        out = out.reshape(())
        expected = losses.mutual_learning_loss(z_self, z_peers, y)
        with_peers = f"with {count} other peer{'s' if count > 1 else ''}"
        if not _close(out, expected):
            return _diagnose_peer_loss(out, expected, z_self, z_peers, y, with_peers)
        problem = gradient_problem(out, expected, z_self, list(z_peers), learner_name="z_self",
                                   leak=_peer_leak, close=_close)
        if problem is not None:
            return problem
    return Feedback(True, "right: CE(z_k, y) + the mean over the other peers of KL(p_l || p_k), equal to "
                          "kdkit.losses.mutual_learning_loss in value and gradient, and no gradient reaches "
                          "the other peers: their predictions are targets, held constant.")


def _diagnose_peer_loss(out, expected, z_self, z_peers, y, with_peers: str) -> Feedback:
    """A wrong value: name the mistake it matches, or say how far it is."""
    value, expected = out.detach().double(), expected.detach()
    if not bool(torch.isfinite(value)):
        return Feedback(False, f"{with_peers} your loss is {float(value)}: a log of a negative number or of 0? "
                               "F.kl_div wants log-probabilities as input, and probabilities as target "
                               "(or log-probabilities with log_target=True)")
    for mistake, wrong in _peer_loss_variants(z_self, z_peers, y):
        if _close(value, wrong):
            return Feedback(False, f"{with_peers}: {mistake}.")
    return Feedback(False, f"{with_peers} your loss is {float(value):.5f}, kdkit's is {float(expected):.5f} "
                           f"(largest difference {abs(float(value - expected)):.3g}). Compare term by term "
                           "with CE(z_self, y) + mean over l of KL(softmax(z_l) || softmax(z_self)).")


def _peer_leak(j: int) -> str:
    return (f"gradient leaks into peer {j} (z_peers[{j}]); detach the peer's prediction: it is a "
            "target for this peer, and the other peer is trained by its own loss")


# --------------------------------------------------------------------------------------
# Exercise 2: spot the gradient leak
# --------------------------------------------------------------------------------------

def leaky_mutual_step(peer1, peer2, optimizer, x, y):
    """One simultaneous DML update of two peers, with a bug to find.

    ``optimizer`` holds both peers' parameters. Each peer's loss is its cross-entropy on the
    labels plus the KL divergence from the other peer's prediction to its own; the two losses
    are added and minimised in one optimiser step. It runs and it trains, and yet it
    is not Deep Mutual Learning: which gradients does ``backward()`` compute here?
    """
    z1, z2 = peer1(x), peer2(x)
    log_p1, log_p2 = F.log_softmax(z1, dim=1), F.log_softmax(z2, dim=1)
    # KL(p2 || p1): F.kl_div takes the learner's log-probabilities first, the target second
    loss1 = F.cross_entropy(z1, y) + F.kl_div(log_p1, log_p2, reduction="batchmean", log_target=True)
    loss2 = F.cross_entropy(z2, y) + F.kl_div(log_p2, log_p1, reduction="batchmean", log_target=True)
    optimizer.zero_grad()
    (loss1 + loss2).backward()
    optimizer.step()


def _mutual_step(peer1, peer2, optimizer, x, y) -> None:
    """The right update: kdkit's loss detaches the other peer, so each loss moves its own peer only."""
    z1, z2 = peer1(x), peer2(x)
    loss = losses.mutual_learning_loss(z1, [z2], y) + losses.mutual_learning_loss(z2, [z1], y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _sequential_step(first: int) -> Callable:
    """The paper's Algorithm 1: update one peer, then recompute both predictions and update the other."""
    def step(peer1, peer2, optimizer, x, y) -> None:
        peers = (peer1, peer2) if first == 1 else (peer2, peer1)
        for me, other in (peers, peers[::-1]):
            loss = losses.mutual_learning_loss(me(x), [other(x)], y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return step


def _labels_only_step(peer1, peer2, optimizer, x, y) -> None:
    """Both peers trained on the labels alone: what is left when the mimicry term moves nothing."""
    loss = F.cross_entropy(peer1(x), y) + F.cross_entropy(peer2(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _net(seed: int) -> nn.Module:
    with torch.random.fork_rng():        # the same small net for the same seed, the global RNG untouched
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 5))


def _batch(seed: int = 0, batch: int = 32) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # inputs of scale 3 give the peers confident, different predictions, so the mimicry term matters
    return 3 * torch.randn(batch, 8, generator=generator), torch.randint(0, 5, (batch,), generator=generator)


def _weights(*peers: nn.Module) -> tuple[Tensor, ...]:
    return tuple(torch.cat([p.detach().flatten() for p in peer.parameters()]) for peer in peers)


def _setup(peer1: nn.Module, peer2: nn.Module):
    """Copies of two peers with one SGD optimizer over both, as the exercise hands them out."""
    peer1, peer2 = copy.deepcopy(peer1), copy.deepcopy(peer2)
    return peer1, peer2, torch.optim.SGD([*peer1.parameters(), *peer2.parameters()], lr=0.1)


def _after(step: Callable, peer1: nn.Module, peer2: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Both peers' weights after ``step`` on copies of them."""
    peer1, peer2, optimizer = _setup(peer1, peer2)
    step(peer1, peer2, optimizer, x.clone(), y.clone())
    return _weights(peer1, peer2)


def check_mutual_update(fn: Callable[[nn.Module, nn.Module, torch.optim.Optimizer, Tensor, Tensor], None]) -> Feedback:
    """Check ``fn(peer1, peer2, optimizer, x, y)``: one simultaneous DML update of both peers.

    ``optimizer`` is SGD (lr = 0.1) over both peers' parameters. After the update each peer must
    have moved by the gradient of its own loss only, the other peer's prediction held constant:
    the same weights as the update computed with :func:`kdkit.losses.mutual_learning_loss`.
    """
    start1, start2 = _net(1), _net(2)
    x, y = _batch()
    peer1, peer2, optimizer = _setup(start1, start2)
    ran = call_answer(lambda: fn(peer1, peer2, optimizer, x.clone(), y.clone()) or "ran")
    if isinstance(ran, Feedback):
        return ran
    mine = _weights(peer1, peer2)
    if _same(mine, _after(_mutual_step, start1, start2, x, y)):
        return Feedback(True, "right: each peer moved by the gradient of its own loss, the other's prediction "
                              "a constant target. With one optimizer, detaching is what keeps peer 1's "
                              "mimicry loss from moving peer 2.")
    return _diagnose_update(mine, start1, start2, x, y)


def _same(a: Sequence[Tensor], b: Sequence[Tensor]) -> bool:
    return all(_close(u, v, atol=1e-6) for u, v in zip(a, b))


def _diagnose_update(mine, start1, start2, x, y) -> Feedback:
    """Weights unlike the right update's: name the update they match, or say which peer is off."""
    if _same(mine, _after(leaky_mutual_step, start1, start2, x, y)):
        return Feedback(False, "the peer's prediction was not detached: each peer was also moved by the "
                               "other's mimicry loss (KL(p1 || p2) pulls p1 towards p2 as well). Use "
                               "z2.detach() in peer 1's loss and z1.detach() in peer 2's.")
    for first in (1, 2):
        if _same(mine, _after(_sequential_step(first), start1, start2, x, y)):
            return Feedback(False, f"you updated peer {first} first, then recomputed the predictions and updated "
                                   f"peer {3 - first}: that is the paper's Algorithm 1, a valid form of DML too, "
                                   "but the exercise asks for the simultaneous update, both peers moved from "
                                   "the same predictions in one step.")
    if _same(mine, _after(_labels_only_step, start1, start2, x, y)):
        return Feedback(False, "both peers moved by their cross-entropy alone: the mimicry term moved nothing. "
                               "Detach only the *other* peer's prediction (the target): each peer's own must keep its gradient.")
    start = _weights(start1, start2)
    moved = [not _close(after, before, atol=1e-6) for after, before in zip(mine, start)]
    if not any(moved):
        return Feedback(False, "no update happened: the weights are unchanged (did you call "
                               "optimizer.step() after backward()?)")
    if not all(moved):
        still = moved.index(False) + 1
        return Feedback(False, f"only peer {3 - still} moved: peer {still} must take its step in the same "
                               "update, by the gradient of its own loss")
    right = _after(_mutual_step, start1, start2, x, y)
    gaps = [float((u - v).abs().max()) for u, v in zip(mine, right)]
    return Feedback(False, f"your update differs from the right one (largest weight difference: peer 1 "
                           f"{gaps[0]:.3g}, peer 2 {gaps[1]:.3g}). Each peer's loss is CE + KL(other's "
                           "prediction, detached || its own); zero the gradients, backward, one step.")


# --------------------------------------------------------------------------------------
# Exercise 3: the pairwise and the ensemble targets differ by a constant
# --------------------------------------------------------------------------------------

def _direct_gap(z_k: Tensor, z_peers: Sequence[Tensor]) -> Tensor:
    """Per-example ``mean_l KL(p_l || p_k) - KL(pbar || p_k)``, computed with peer k, shape (B,)."""
    log_p_k = F.log_softmax(z_k, dim=1)
    logs = [F.log_softmax(z, dim=1) for z in z_peers]
    pbar = torch.stack([log.exp() for log in logs]).mean(dim=0)
    pairwise = torch.stack([_kl(log.exp(), log, log_p_k) for log in logs]).mean(dim=0)
    return pairwise - _kl(pbar, pbar.clamp_min(1e-300).log(), log_p_k)


def _gap_variants(z_peers: Sequence[Tensor]) -> list[tuple[str, Tensor]]:
    """The usual wrong versions of the gap (batch means, float64), each with the mistake it makes."""
    probs = torch.stack([F.softmax(z, dim=1) for z in z_peers])          # (n, B, K)
    pbar, mean_entropy = probs.mean(dim=0), torch.stack([_entropy(p) for p in probs]).mean(dim=0)
    gap = _entropy(pbar) - mean_entropy
    p_of_mean_logits = F.softmax(torch.stack(list(z_peers)).mean(dim=0), dim=1)
    log_m = F.log_softmax(torch.stack(list(z_peers)).mean(dim=0), dim=1)
    logits_mean = "you averaged the logits, then took a softmax; pbar is the mean of the peers' probabilities"
    return [
        ("the sign is flipped: the gap is H(pbar) - mean_l H(p_l), which is never negative "
         "(the entropy is concave)", -gap.mean()),
        ("the gap is summed over the batch; return its batch mean", gap.sum()),
        ("the gap is averaged over the classes as well as the examples: sum over the classes, "
         "then average over the batch", gap.mean() / pbar.shape[1]),
        ("you used log base 2: the KL terms of the losses use natural logarithms", gap.mean() / math.log(2)),
        (logits_mean, (_entropy(p_of_mean_logits) - mean_entropy).mean()),
        (logits_mean, torch.stack([_kl(p, p.clamp_min(1e-300).log(), log_m) for p in probs]).mean()),
        ("you returned H(pbar) alone: subtract the peers' mean entropy, mean_l H(p_l)", _entropy(pbar).mean()),
    ]


def check_ensemble_gap(fn: Callable[[Sequence[Tensor]], Tensor]) -> Feedback:
    """Check ``fn(z_peers)``: the batch mean of ``mean_l KL(p_l || p_k) - KL(pbar || p_k)``, a 0-d tensor.

    ``z_peers`` is a list of the other peers' (B, K) logits and ``pbar`` the mean of their
    probabilities. The gap equals ``H(pbar) - mean_l H(p_l)`` (the generalised Jensen-Shannon
    divergence of the peers), which does not involve peer k: the checker compares the answer
    with the gap computed directly for several peers k, and with 2 and with 3 other peers.
    """
    for seed, count in enumerate(_GAP_PEER_COUNTS):
        z_peers = _logits(count, seed=10 + seed)
        direct = [_direct_gap(z_k, z_peers) for z_k in _logits(3, seed=20 + seed)]   # three peers k
        expected = direct[0].mean()
        out = _call(fn, [z.clone() for z in z_peers])
        if isinstance(out, Feedback):
            return out
        with_peers = f"with {count} other peers"
        if out.shape == (BATCH,) and _close(out, direct[0]):
            return Feedback(False, f"{with_peers}: you returned the gap of every example, shape {tuple(out.shape)}; "
                                   "average it over the batch (.mean()), as the losses do")
        if out.numel() != 1:
            return Feedback(False, f"return one number (a 0-d tensor, the batch mean), got shape {tuple(out.shape)}")
        out = out.reshape(())
        if all(_close(out, gap.mean()) for gap in direct):
            continue
        for mistake, wrong in _gap_variants(z_peers):
            if _close(out, wrong):
                return Feedback(False, f"{with_peers}: {mistake}.")
        return Feedback(False, f"{with_peers} your gap is {float(out):.5f}; computed with any peer k it is "
                               f"{float(expected):.5f}. Write both KL terms out: the log p_k parts cancel "
                               "and what is left are the peers' entropies.")
    return Feedback(True, "right: mean_l KL(p_l || p_k) - KL(pbar || p_k) = H(pbar) - mean_l H(p_l) for every "
                          "peer k tried. It does not involve peer k, so the pairwise (DML) and the averaged "
                          "(DML_e) targets give peer k the same gradient: the losses differ by a constant.")


def ensemble_gap_demo(seed: int = 0, peers: int = 3) -> dict[str, float]:
    """The two DML targets side by side on random float64 logits (``peers`` other peers).

    ``pairwise_loss`` and ``ensemble_loss`` are :func:`kdkit.losses.mutual_learning_loss` with
    ``target="pairwise"`` and ``"ensemble"`` (the same cross-entropy in both, so it cancels in
    their ``difference``); ``jensen_shannon`` is ``H(pbar) - mean_l H(p_l)`` from the peers
    alone; ``max_gradient_difference`` compares the two losses' gradients w.r.t. peer k's logits.
    """
    z_k, *z_peers = _logits(1 + peers, seed=seed)
    z_k.requires_grad_(True)
    y = _labels(seed)
    pairwise = losses.mutual_learning_loss(z_k, z_peers, y, target="pairwise")
    ensemble = losses.mutual_learning_loss(z_k, z_peers, y, target="ensemble")
    grad_pairwise = torch.autograd.grad(pairwise, z_k)[0]
    grad_ensemble = torch.autograd.grad(ensemble, z_k)[0]
    probs = torch.stack([F.softmax(z, dim=1) for z in z_peers])
    jensen_shannon = _entropy(probs.mean(dim=0)) - torch.stack([_entropy(p) for p in probs]).mean(dim=0)
    pairwise, ensemble = pairwise.detach(), ensemble.detach()
    return {"pairwise_loss": float(pairwise), "ensemble_loss": float(ensemble),
            "difference": float(pairwise - ensemble), "jensen_shannon": float(jensen_shannon.mean()),
            "max_gradient_difference": float((grad_pairwise - grad_ensemble).abs().max())}


# --------------------------------------------------------------------------------------
# Exercises 4 and 5: predict a comparison, read a measurement
# --------------------------------------------------------------------------------------

READING_CHOICES = {"a": "the DML peers", "b": "the independent networks", "c": "these seeds cannot tell"}


def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 4: was the prediction ("higher", "lower", "no clear difference") for a pair of DML
    peers at the paper's setting (T = 1, weight 1) against their twins trained alone (CNNs, 10% of
    the data) what the runs measured?"""
    return check_prediction_against(prediction, comparison,
                                    what="CNN peers at the paper's T = 1, weight 1 against their twins (10% of the data)")


def _interval(comparison: Comparison) -> str:
    """The paired difference in the metric's own units (not every metric is an accuracy)."""
    d = comparison.difference
    return f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}] (95% CI, n = {d.n})"


def check_curve_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 5: which arm is higher in the measured comparison, the DML peers (treatment) or
    the independent networks (control), or can these seeds not tell? Answer with a letter of
    :data:`READING_CHOICES`; the right one is where the paired interval lies with respect to 0."""
    on_entropy = "If the measure is the predictive entropy on the test set, "
    meaning = {"a": on_entropy + "this is what the paper argues: matching a peer's whole distribution keeps "
                                 "each network less confident than it would be alone, in flatter, more robust "
                                 "solutions.",
               "b": on_entropy + "this goes against the paper's argument: here the peers ended *more* "
                                 "confident than the networks trained alone.",
               "c": "The arms differ by less than these seeds can resolve."}
    return check_comparison_reading(answer, comparison, READING_CHOICES,
                                    difference="DML peers minus independent networks", explanation=meaning,
                                    interval=_interval(comparison))


# --------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------

def _solution_1(z_self, z_peers, y):
    log_p_self = F.log_softmax(z_self, dim=1)
    mimicry = [F.kl_div(log_p_self, F.softmax(z.detach(), dim=1), reduction="batchmean")   # KL(p_l || p_k)
               for z in z_peers]
    return F.cross_entropy(z_self, y) + sum(mimicry) / len(mimicry)        # the paper averages over peers


def _solution_2(peer1, peer2, optimizer, x, y):
    z1, z2 = peer1(x), peer2(x)

    def peer_loss(z_own, z_other):    # the other peer's prediction is a target: detached
        mimicry = F.kl_div(F.log_softmax(z_own, dim=1), F.softmax(z_other.detach(), dim=1), reduction="batchmean")
        return F.cross_entropy(z_own, y) + mimicry

    optimizer.zero_grad()
    (peer_loss(z1, z2) + peer_loss(z2, z1)).backward()    # each loss now reaches its own peer only
    optimizer.step()


def _solution_3(z_peers):
    def entropy(p):
        return -(p * p.clamp_min(1e-300).log()).sum(dim=1)

    probs = [F.softmax(z, dim=1) for z in z_peers]
    p_bar = sum(probs) / len(probs)                                   # the mean of probabilities, not of logits
    mean_entropy = sum(entropy(p) for p in probs) / len(probs)
    return (entropy(p_bar) - mean_entropy).mean()


_CODE = {1: (_solution_1, "exercise_peer_loss"), 2: (_solution_2, "exercise_mutual_update"),
         3: (_solution_3, "exercise_ensemble_gap")}

_REASONING = {
    4: ("How to reason: on validation the CNN pairs wanted little mimicry (a weight of 0.1 with 10% of "
        "the data), and at T = 1, weight 1 the full-data CNN pair lost 5 points, so a loss is plausible: a "
        "CNN on 349 signals is unsure of most test signals, and at full weight each peer is pulled towards "
        "the other's equally unsure prediction, away from the few labels. Then let the paired interval "
        "decide, not the two means. Measured: -3.1 [-6.9, +0.7] points on the seeds 100-104, so 'no clear "
        "difference' (the interval contains 0, though most of it lies below), and +1.0 [-2.5, +4.5] on "
        "the seeds 200-204. The spread of a CNN trained on 349 signals is large: five seeds cannot "
        "settle a 3-point effect."),
    5: ("How to read it: each seed gives one difference, DML minus independent, from two runs that "
        "share their initial weights and batches. The 95% interval of those differences decides: entirely "
        "above 0 -> (a), entirely below 0 -> (b), containing 0 -> (c). The error bars of the two arms show "
        "each arm's spread over seeds, which includes what the seeds share, so they overlap even when the "
        "paired interval is clear of 0. What to expect: the mimicry term pulls each peer towards the other's "
        "prediction, and where the peers disagree no single confident answer satisfies both, so the paper "
        "argues that DML peers end less confident, with higher entropy; whether that shows here is what the "
        "measurement says."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _CODE, _REASONING, notebook="the DML notebook")
