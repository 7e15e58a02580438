"""The Deep Mutual Learning notebook's exercise checkers: a right answer passes, each typical mistake
gets a message that names it, an exception in the learner's code is reported (never raised), and
every official solution passes its own checker."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.exercises import dml as ex
from kdkit.exercises.feedback import PREDICTIONS
from kdkit.experiments.runs import Comparison, Summary

SEEDS = (100, 101, 102, 103, 104)
OUTCOMES = {"higher": (0.02, 0.03, 0.025, 0.02, 0.03), "lower": (-0.02, -0.03, -0.025, -0.02, -0.03),
            "no clear difference": (0.02, -0.03, 0.01, -0.01, 0.0)}


def _raise(error: Exception):
    raise error


def _solution(number: int):
    """Execute solution ``number`` as a notebook cell would, and return the function it defines."""
    namespace = {"F": F, "torch": torch}
    exec(ex.solution(number), namespace)
    return next(v for k, v in namespace.items() if k.startswith("exercise_") and callable(v))


def _kl(p_target, log_q):
    """Batch mean of KL(p_target || q)."""
    return (p_target * (p_target.log() - log_q)).sum(dim=1).mean()


# --------------------------------------------------------------------------------------
# Exercise 1: one peer's loss
# --------------------------------------------------------------------------------------

def right_peer_loss(z_self, z_peers, y):
    log_p = F.log_softmax(z_self, dim=1)
    kl = [_kl(F.softmax(z.detach(), dim=1), log_p) for z in z_peers]
    return F.cross_entropy(z_self, y) + sum(kl) / len(kl)


@pytest.mark.parametrize("answer", [
    right_peer_loss,
    lambda z, peers, y: losses.mutual_learning_loss(z, peers, y),
    lambda z, peers, y: losses.mutual_learning_loss(z, peers, y).reshape(1),      # one number, any shape
    lambda z, peers, y: F.cross_entropy(z, y) + sum(
        F.kl_div(F.log_softmax(z, 1), F.log_softmax(p.detach(), 1), reduction="batchmean", log_target=True)
        for p in peers) / len(peers),
])
def test_peer_loss_checker_accepts_right_answers(answer):
    feedback = ex.check_peer_loss(answer)
    assert feedback, feedback.message
    assert str(feedback).startswith("[correct]")


def _with_peers(kl_of, combine=lambda terms: sum(terms) / len(terms), ce=True):
    """A peer loss built from ``kl_of(z_self, z_peer)``, the peers' terms combined by ``combine``."""
    def answer(z_self, z_peers, y):
        mimicry = combine([kl_of(z_self, z.detach()) for z in z_peers])
        return F.cross_entropy(z_self, y) + mimicry if ce else mimicry
    return answer


def _kl_div(reduction, input_probs=False):
    def kl_of(z_self, z_peer):
        given = F.softmax(z_self, 1) if input_probs else F.log_softmax(z_self, 1)
        return F.kl_div(given, F.softmax(z_peer, 1), reduction=reduction)
    return kl_of


def _right_kl(z_self, z_peer):
    return _kl(F.softmax(z_peer, 1), F.log_softmax(z_self, 1))


@pytest.mark.parametrize("answer, words", [
    (_with_peers(lambda z, p: _kl(F.softmax(z, 1), F.log_softmax(p, 1))), "wrong way round"),
    (_with_peers(_kl_div("mean")), "K times too weak"),
    (_with_peers(lambda z, p: torch.nn.KLDivLoss()(F.log_softmax(z, 1), F.softmax(p, 1))), "K times too weak"),
    (_with_peers(_kl_div("sum")), "summed over the batch"),
    (lambda z, peers, y: F.cross_entropy(z, y, reduction="sum") + sum(
        F.kl_div(F.log_softmax(z, 1), F.softmax(p.detach(), 1), reduction="sum") for p in peers) / len(peers),
     "whole loss is summed"),
    (_with_peers(_right_kl, combine=sum), "paper's loss"),
    (_with_peers(_right_kl, ce=False), "cross-entropy on the labels is missing"),
    (lambda z, peers, y: F.cross_entropy(z, y), "mimicry term is missing"),
    (_with_peers(_kl_div("batchmean", input_probs=True)), "log_softmax(z_self), not softmax"),
    (_with_peers(_kl_div("mean", input_probs=True)), "averaged over classes too"),
    (_with_peers(lambda z, p: F.kl_div(F.log_softmax(z, 1), F.log_softmax(p, 1), reduction="batchmean")),
     "log_target=True"),
    (_with_peers(_right_kl, combine=lambda terms: 0.5 * sum(terms) / len(terms)), "largest difference"),
])
def test_peer_loss_checker_names_the_mistake(answer, words):
    feedback = ex.check_peer_loss(answer)
    assert not feedback and words in feedback.message, feedback.message


def test_the_sum_over_peers_mentions_the_official_code_and_is_caught_with_three_peers():
    feedback = ex.check_peer_loss(_with_peers(_right_kl, combine=sum))
    assert "TensorFlow code sums" in feedback.message and "with 3 other peers" in feedback.message


def test_a_peer_that_is_not_detached_is_named():
    def leaky(z_self, z_peers, y):
        log_p = F.log_softmax(z_self, dim=1)
        terms = [_kl(F.softmax(z, dim=1), log_p) for z in z_peers]       # no detach
        return F.cross_entropy(z_self, y) + sum(terms) / len(terms)

    feedback = ex.check_peer_loss(leaky)
    assert not feedback and "gradient leaks into peer 0" in feedback.message
    assert "detach the peer's prediction" in feedback.message


def test_a_leak_into_a_later_peer_is_named_by_its_index():
    def leaky_last(z_self, z_peers, y):
        peers = [z.detach() for z in z_peers[:-1]] + [z_peers[-1]]
        return right_peer_loss(z_self, peers, y)

    def right_but_last(z_self, z_peers, y):
        log_p = F.log_softmax(z_self, dim=1)
        terms = [_kl(F.softmax(z if j == len(z_peers) - 1 else z.detach(), dim=1), log_p)
                 for j, z in enumerate(z_peers)]
        return F.cross_entropy(z_self, y) + sum(terms) / len(terms)

    assert ex.check_peer_loss(leaky_last)                       # right_peer_loss detaches every peer itself
    feedback = ex.check_peer_loss(right_but_last)
    assert not feedback and "peer 0" in feedback.message          # one other peer first: index 0
    three = ex.check_peer_loss(lambda z, peers, y: right_but_last(z, peers, y) if len(peers) == 3
                               else right_peer_loss(z, peers, y))
    assert not three and "peer 2 (z_peers[2])" in three.message


def test_peer_loss_gradient_problems_are_named():
    detached_self = ex.check_peer_loss(lambda z, peers, y: losses.mutual_learning_loss(z.detach(), peers, y))
    assert not detached_self and "no gradient" in detached_self.message

    def half_detached(z_self, z_peers, y):           # the right value, the mimicry term cut from the graph
        return F.cross_entropy(z_self, y) + losses.mutual_learning_loss(z_self.detach(), z_peers, y) \
            - F.cross_entropy(z_self.detach(), y)

    feedback = ex.check_peer_loss(half_detached)
    assert not feedback and "gradient w.r.t. z_self" in feedback.message


@pytest.mark.parametrize("answer, words", [
    (lambda z, peers, y: None, "not answered"),
    (lambda z, peers, y: _raise(NotImplementedError()), "not answered"),
    (lambda z, peers, y: 1 / 0, "ZeroDivisionError"),
    (lambda z, peers, y: 3.0, "torch.Tensor"),
    (lambda z, peers, y: torch.zeros(len(y)), "one number"),
])
def test_peer_loss_checker_reports_unusable_answers(answer, words):
    feedback = ex.check_peer_loss(answer)
    assert not feedback and words in feedback.message, feedback.message


# --------------------------------------------------------------------------------------
# Exercise 2: the simultaneous update, without the leak
# --------------------------------------------------------------------------------------

def right_update(peer1, peer2, optimizer, x, y):
    z1, z2 = peer1(x), peer2(x)
    loss1 = F.cross_entropy(z1, y) + _kl(F.softmax(z2.detach(), 1), F.log_softmax(z1, 1))
    loss2 = F.cross_entropy(z2, y) + _kl(F.softmax(z1.detach(), 1), F.log_softmax(z2, 1))
    optimizer.zero_grad()
    (loss1 + loss2).backward()
    optimizer.step()


def two_backward_calls(peer1, peer2, optimizer, x, y):
    z1, z2 = peer1(x), peer2(x)
    optimizer.zero_grad()
    losses.mutual_learning_loss(z1, [z2], y).backward()
    losses.mutual_learning_loss(z2, [z1], y).backward()
    optimizer.step()
    return 0.0                                           # a returned value is ignored


@pytest.mark.parametrize("answer", [right_update, two_backward_calls])
def test_mutual_update_checker_accepts_right_answers(answer):
    feedback = ex.check_mutual_update(answer)
    assert feedback, feedback.message


def test_the_leaky_step_is_shown_and_named():
    import inspect

    source = inspect.getsource(ex.leaky_mutual_step)
    assert "def leaky_mutual_step(peer1, peer2, optimizer, x, y)" in source and ex.leaky_mutual_step.__doc__
    feedback = ex.check_mutual_update(ex.leaky_mutual_step)
    assert not feedback and "not detached" in feedback.message
    assert "moved by the other's mimicry loss" in feedback.message


def _sequential(first):
    def update(peer1, peer2, optimizer, x, y):
        peers = (peer1, peer2) if first == 1 else (peer2, peer1)
        for me, other in (peers, peers[::-1]):
            z_me, z_other = me(x), other(x)
            loss = F.cross_entropy(z_me, y) + _kl(F.softmax(z_other.detach(), 1), F.log_softmax(z_me, 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return update


def only_peer(k):
    def update(peer1, peer2, optimizer, x, y):
        me, other = (peer1, peer2) if k == 1 else (peer2, peer1)
        loss = losses.mutual_learning_loss(me(x), [other(x)], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return update


def labels_only(peer1, peer2, optimizer, x, y):
    z1, z2 = peer1(x), peer2(x)
    loss1 = F.cross_entropy(z1, y) + _kl(F.softmax(z2.detach(), 1), F.log_softmax(z1.detach(), 1))  # both detached
    loss2 = F.cross_entropy(z2, y) + _kl(F.softmax(z1.detach(), 1), F.log_softmax(z2.detach(), 1))
    optimizer.zero_grad()
    (loss1 + loss2).backward()
    optimizer.step()


def two_steps(peer1, peer2, optimizer, x, y):
    for _ in range(2):
        right_update(peer1, peer2, optimizer, x, y)


@pytest.mark.parametrize("answer, words", [
    (_sequential(1), "updated peer 1 first"),
    (_sequential(2), "updated peer 2 first"),
    (lambda peer1, peer2, optimizer, x, y: None, "no update happened"),
    (only_peer(1), "only peer 1 moved"),
    (only_peer(2), "only peer 2 moved"),
    (labels_only, "cross-entropy alone"),
    (two_steps, "largest weight difference"),
    (lambda peer1, peer2, optimizer, x, y: _raise(NotImplementedError()), "not answered"),
    (lambda peer1, peer2, optimizer, x, y: peer1(x.T), "RuntimeError"),
])
def test_mutual_update_checker_names_the_mistake(answer, words):
    feedback = ex.check_mutual_update(answer)
    assert not feedback and words in feedback.message, feedback.message


def test_the_sequential_update_is_called_valid_but_not_what_was_asked():
    message = ex.check_mutual_update(_sequential(1)).message
    assert "Algorithm 1" in message and "simultaneous" in message


def test_the_mutual_update_checker_leaves_the_global_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    ex.check_mutual_update(right_update)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------
# Exercise 3: the gap between the pairwise and the averaged targets
# --------------------------------------------------------------------------------------

def _entropy(p):
    return -(p * p.log()).sum(dim=1)


def right_gap(z_peers):
    probs = [F.softmax(z, dim=1) for z in z_peers]
    p_bar = sum(probs) / len(probs)
    return (_entropy(p_bar) - sum(_entropy(p) for p in probs) / len(probs)).mean()


def js_as_kl_to_the_mean(z_peers):
    probs = [F.softmax(z, dim=1) for z in z_peers]
    log_p_bar = (sum(probs) / len(probs)).log()
    return sum(_kl(p, log_p_bar) for p in probs) / len(probs)


@pytest.mark.parametrize("answer", [right_gap, js_as_kl_to_the_mean, lambda zs: right_gap(zs).reshape(1)])
def test_ensemble_gap_checker_accepts_right_answers(answer):
    feedback = ex.check_ensemble_gap(answer)
    assert feedback, feedback.message


def _per_example(z_peers):
    probs = [F.softmax(z, dim=1) for z in z_peers]
    return _entropy(sum(probs) / len(probs)) - sum(_entropy(p) for p in probs) / len(probs)


def _of_mean_logits(z_peers):
    probs = [F.softmax(z, dim=1) for z in z_peers]
    p_mean_logits = F.softmax(sum(z_peers) / len(z_peers), dim=1)
    return (_entropy(p_mean_logits) - sum(_entropy(p) for p in probs) / len(probs)).mean()


@pytest.mark.parametrize("answer, words", [
    (lambda zs: -right_gap(zs), "sign is flipped"),
    (_per_example, "average it over the batch"),
    (lambda zs: _per_example(zs).sum(), "summed over the batch"),
    (lambda zs: right_gap(zs) / zs[0].shape[1], "averaged over the classes"),
    (lambda zs: right_gap(zs) / math.log(2), "log base 2"),
    (_of_mean_logits, "averaged the logits"),
    (lambda zs: sum(_kl(F.softmax(z, 1), F.log_softmax(sum(zs) / len(zs), 1)) for z in zs) / len(zs),
     "averaged the logits"),
    (lambda zs: _entropy(sum(F.softmax(z, 1) for z in zs) / len(zs)).mean(), "H(pbar) alone"),
    (lambda zs: 2 * right_gap(zs), "computed with any peer k"),
    (lambda zs: torch.zeros(3), "one number"),
    (lambda zs: None, "not answered"),
    (lambda zs: zs[5], "IndexError"),
])
def test_ensemble_gap_checker_names_the_mistake(answer, words):
    feedback = ex.check_ensemble_gap(answer)
    assert not feedback and words in feedback.message, feedback.message


def test_the_gap_does_not_depend_on_peer_k():
    z_peers = ex._logits(3, seed=5)
    gaps = [ex._direct_gap(z_k, z_peers) for z_k in ex._logits(4, seed=6)]
    for gap in gaps[1:]:
        torch.testing.assert_close(gap, gaps[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(gaps[0].mean(), right_gap(z_peers), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, peers", [(0, 3), (1, 1), (2, 4)])
def test_ensemble_gap_demo_shows_a_constant_difference_and_the_same_gradient(seed, peers):
    demo = ex.ensemble_gap_demo(seed, peers=peers)
    assert set(demo) == {"pairwise_loss", "ensemble_loss", "difference", "jensen_shannon",
                         "max_gradient_difference"}
    assert demo["difference"] == pytest.approx(demo["pairwise_loss"] - demo["ensemble_loss"])
    assert demo["difference"] == pytest.approx(demo["jensen_shannon"], abs=1e-12)
    assert demo["difference"] >= 0 and demo["max_gradient_difference"] < 1e-12
    assert all(isinstance(value, float) for value in demo.values())


# --------------------------------------------------------------------------------------
# Exercises 4 and 5: predict, then read the measured comparison
# --------------------------------------------------------------------------------------

def comparison(differences, claim="a DML peer beats its independent twin") -> Comparison:
    control = Summary(tuple(0.6 + 0.01 * i for i in range(len(differences))), SEEDS)
    treatment = Summary(tuple(c + d for c, d in zip(control.values, differences)), SEEDS)
    return Comparison(claim, treatment, control)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_prediction_checker_follows_the_measured_interval(outcome):
    measured = comparison(OUTCOMES[outcome])
    feedback = ex.check_prediction(outcome, measured)
    assert feedback and "paper's T = 1, weight 1 against their twins" in feedback.message and "n = 5" in feedback.message
    for wrong in (p for p in PREDICTIONS if p != outcome):
        assert not ex.check_prediction(wrong, measured)
    assert "one of" in ex.check_prediction("maybe", measured).message


@pytest.mark.parametrize("outcome, letter", [("higher", "a"), ("lower", "b"), ("no clear difference", "c")])
def test_reading_checker_follows_the_measured_interval(outcome, letter):
    measured = comparison(OUTCOMES[outcome], "DML peers have a higher test entropy")
    feedback = ex.check_curve_reading(letter, measured)
    assert feedback and f"'{ex.READING_CHOICES[letter]}'" in feedback.message
    assert ex.check_curve_reading(letter.upper() + " ", measured)
    for wrong in (c for c in ex.READING_CHOICES if c != letter):
        feedback = ex.check_curve_reading(wrong, measured)
        assert not feedback and f"not ({wrong})" in feedback.message
        assert f"({letter})" not in feedback.message                 # a wrong answer is not told the letter
    assert "one letter" in ex.check_curve_reading("d", measured).message


def test_reading_checker_quotes_the_interval_in_the_metric_s_own_units():
    measured = comparison((0.051, 0.048, 0.05, 0.052, 0.049))       # e.g. nats of entropy
    message = ex.check_curve_reading("a", measured).message
    assert "+0.05 [" in message and "n = 5" in message


# --------------------------------------------------------------------------------------
# The instructor's solutions
# --------------------------------------------------------------------------------------

def test_the_code_solutions_pass_their_checkers():
    assert ex.check_peer_loss(_solution(1))
    assert ex.check_mutual_update(_solution(2))
    assert ex.check_ensemble_gap(_solution(3))


def test_the_code_solutions_run_where_the_notebook_imports_kdkit_too():
    namespace = {"F": F, "torch": torch, "losses": losses, "math": math}
    exec(ex.solution(1), namespace)
    assert ex.check_peer_loss(namespace["exercise_peer_loss"])


def test_the_measured_exercises_are_answered_with_reasoning_not_an_outcome():
    for number in (4, 5):
        text = ex.solution(number)
        assert isinstance(text, str) and "interval" in text
        assert not any(f"'{p}'" == text.strip() for p in PREDICTIONS)
        assert "my_prediction =" not in text and "my_answer =" not in text


def test_an_unknown_exercise_is_refused():
    with pytest.raises(KeyError, match="exercises"):
        ex.solution(6)
