"""Exercises for notebook 03 (Yuan et al. 2020, Tf-KD), each with a checker.

* :func:`check_virtual_teacher` - write the virtual teacher's distribution ``softmax(p_d / T)``;
* :func:`check_lsr_as_kd` - write label smoothing as KD with a uniform teacher (values and
  gradients must equal :func:`kdkit.losses.label_smoothing_loss`);
* :func:`check_prediction` - predict, before running it, whether label smoothing (which
  helps the CNN student) helps the MLP student too;
* :func:`check_curve_reading` - read the teacher-quality plot: which teacher's student is
  better, the untrained or the fully trained one, or can these seeds not tell?

:func:`solution` returns the instructor's answer to an exercise by number, so that a student
does not see it by accident while scrolling.

A checker calls the learner's function on fixed random inputs, compares it with kdkit's
reference and, when they differ, names the likely mistake. It returns a :class:`Feedback`,
truthy when the answer is right, displayed as its message. A wrong answer, or an exception
inside the learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.exercises.feedback import (PREDICTIONS, Feedback, check_prediction_against,
                                      measured_outcome, solution_text, tensor_answer, tensors_close)
from kdkit.experiments.runs import Comparison

Tensor = torch.Tensor

# (K, a, T) settings every answer is tried on: T = 1 alone could not reveal a missing softening.
_VT_SETTINGS = ((10, 0.9, 20.0), (100, 0.99, 20.0), (5, 0.6, 2.0))
_SMOOTHINGS = (0.1, 0.3)


_call = tensor_answer  # the learner's function called safely: a tensor, or Feedback saying why not


def _close(a: Tensor, b: Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    return tensors_close(a, b, rtol=rtol, atol=atol)


def _labels(batch: int, classes: int, seed: int = 0) -> Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------
# Exercise 1: the virtual teacher
# --------------------------------------------------------------------------------------

def _p_d(labels: Tensor, K: int, a: float, off: float) -> Tensor:
    p = torch.full((labels.shape[0], K), off, dtype=torch.float64)
    p[torch.arange(labels.shape[0]), labels] = a
    return p


def check_virtual_teacher(fn: Callable[[Tensor, int, float, float], Tensor]) -> Feedback:
    """Check ``fn(labels, K, a, T)``: the (B, K) tensor ``softmax(p_d / T)`` of Tf-KD_reg.

    ``p_d(k) = a`` for the labelled class and ``(1 - a) / (K - 1)`` for each other class.
    """
    for K, a, T in _VT_SETTINGS:
        y = _labels(6, K)
        out = _call(fn, y.clone(), K, a, T)
        if isinstance(out, Feedback):
            return out
        expected = losses.virtual_teacher_probs(y, K, correct_prob=a, T=T).to(torch.float64)
        if _close(out, expected, atol=1e-6):
            continue
        setting = f"(K={K}, a={a}, T={T:g})"
        if out.shape != expected.shape:
            return Feedback(False, f"shape {tuple(out.shape)} at {setting}; expected (batch, K) = "
                                   f"{tuple(expected.shape)}")
        out = out.detach().to(torch.float64)
        right_p_d = _p_d(y, K, a, (1 - a) / (K - 1))
        if _close(out, right_p_d):
            return Feedback(False, f"you returned p_d itself {setting}: soften it, softmax(p_d / T)")
        if _close(out, F.softmax(right_p_d, dim=1)):
            return Feedback(False, f"you used softmax(p_d) {setting}: divide p_d by T before the softmax")
        if _close(out, F.softmax(right_p_d * T, dim=1)):
            return Feedback(False, f"you multiplied p_d by T {setting}: divide by T")
        if _close(out, F.softmax(_p_d(y, K, a, (1 - a) / K) / T, dim=1)):
            return Feedback(False, f"the other classes get (1 - a)/K {setting}: the remaining mass "
                                   "1 - a is shared by the K - 1 *other* classes, (1 - a)/(K - 1)")
        if _close(out, F.softmax(_p_d(y, K, a, 1 - a) / T, dim=1)):
            return Feedback(False, f"each other class gets 1 - a {setting}: share it, (1 - a)/(K - 1)")
        if _close(out.exp(), expected) or _close(out, expected.log()):
            return Feedback(False, f"you returned log-probabilities {setting}: return probabilities")
        if not torch.allclose(out.sum(dim=1), torch.ones(out.shape[0], dtype=torch.float64), atol=1e-4):
            return Feedback(False, f"your rows do not sum to 1 {setting}: each row must be a distribution")
        if not bool((out.argmax(dim=1) == y).all()) and a > 1 / K:
            return Feedback(False, f"the largest probability is not on the labelled class {setting}: "
                                   "p_d puts a on labels[i] in row i")
        return Feedback(False, f"your distribution differs from softmax(p_d / T) {setting} "
                               f"(largest difference {float((out - expected).abs().max()):.3g})")
    return Feedback(True, "right: softmax(p_d / T). Notice how flat it is at T = 20: "
                          "with K = 100 the correct class gets only about 1.05%.")


# --------------------------------------------------------------------------------------
# Exercise 2: a uniform teacher is label smoothing
# --------------------------------------------------------------------------------------

def _student(batch: int = 16, classes: int = 10, seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(batch, classes, generator=generator, dtype=torch.float64)).requires_grad_()


def check_lsr_as_kd(fn: Callable[[Tensor, Tensor, float], Tensor]) -> Feedback:
    """Check ``fn(z_s, y, eps)``: label smoothing computed with ``kdkit.losses.kd_loss``.

    The answer must equal ``losses.label_smoothing_loss(z_s, y, smoothing=eps)`` in value and
    in gradient: KD from a teacher whose logits are all equal (a uniform teacher), at the
    right T and alpha, plus the constant that turns a KL divergence into a cross-entropy.
    """
    K = 10
    for eps in _SMOOTHINGS:
        z_s, y = _student(classes=K), _labels(16, K, seed=2)
        out = _call(fn, z_s, y, eps)
        if isinstance(out, Feedback):
            return out
        if out.dim() != 0:
            return Feedback(False, "return one number (a 0-d tensor, the batch mean), "
                                   f"got shape {tuple(out.shape)}")
        if not out.requires_grad:
            return Feedback(False, "your loss does not depend on z_s through autograd "
                                   "(did you detach the student's logits or call .item()?)")
        expected = losses.label_smoothing_loss(z_s, y, smoothing=eps)
        grad_out = torch.autograd.grad(out, z_s, retain_graph=True)[0]
        grad_expected = torch.autograd.grad(expected, z_s)[0]
        same_grad = _close(grad_out, grad_expected)
        value_gap = float((expected - out).detach())
        if same_grad and abs(value_gap) < 1e-6:
            continue
        if same_grad and math.isclose(value_gap, eps * math.log(K), rel_tol=1e-4):
            return Feedback(False, f"the gradients agree, but your value is lower by eps * log K = "
                                   f"{eps * math.log(K):.4f} (eps={eps}): kd_loss uses a KL divergence, "
                                   "which is the cross-entropy minus the teacher's entropy (log K for "
                                   "a uniform teacher). Add eps * math.log(K).")
        if same_grad:
            return Feedback(False, f"the gradients agree but the values differ by {value_gap:.4f} "
                                   f"(eps={eps}); the right constant is eps * log K")
        swapped = losses.kd_loss(z_s, torch.zeros_like(z_s), y, T=1.0, alpha=1 - eps)
        if _close(grad_out, torch.autograd.grad(swapped, z_s)[0]):
            return Feedback(False, f"you used alpha = 1 - eps (eps={eps}): in kdkit alpha weights the "
                                   "*distillation* term, so the smoothing mass is alpha = eps")
        for T in (2.0, 4.0, 20.0):
            at_T = losses.kd_loss(z_s, torch.zeros_like(z_s), y, T=T, alpha=eps)
            if _close(grad_out, torch.autograd.grad(at_T, z_s)[0]):
                return Feedback(False, f"you used T = {T:g}: label smoothing acts on the student's "
                                       "ordinary (T = 1) prediction; at T != 1 the student is softened "
                                       "and the soft term scaled by T^2, which LSR does not do")
        return Feedback(False, f"your gradient differs from label smoothing's (eps={eps}); the teacher "
                               "must be uniform: give kd_loss teacher logits that are equal in every class, "
                               "e.g. torch.zeros_like(z_s)")
    return Feedback(True, "right: KD from a uniform teacher at T = 1 with alpha = eps is label smoothing "
                          "(up to the constant eps * log K, which changes no gradient).")


# --------------------------------------------------------------------------------------
# Exercises 3 and 4: predict a comparison, read a plot
# --------------------------------------------------------------------------------------

READINGS = ("the untrained teacher", "the trained teacher", "cannot tell")
# What exercises 3 and 4 measure here (the claim tests check both against the runs).
ANSWER_3 = "no clear difference"
ANSWER_4 = "the untrained teacher"


def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 3: was the prediction ("higher", "lower", "no clear difference") for the MLP
    student with label smoothing against the MLP on labels only what the runs measured?"""
    return check_prediction_against(prediction, comparison,
                                    what="the MLP with label smoothing against labels only")


def check_curve_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 4: whose student is better, the untrained (epoch 0) or the fully trained
    teacher's? ``comparison`` is untrained vs trained, each with its own tuned T and alpha."""
    if answer not in READINGS:
        return Feedback(False, f"answer with one of {', '.join(repr(r) for r in READINGS)}, got {answer!r}")
    measured = dict(zip(PREDICTIONS, READINGS))[measured_outcome(comparison)]
    summary = (f"untrained minus trained teacher's student: paired difference "
               f"{comparison.difference.points()} points (95% CI, n = {comparison.difference.n}), "
               f"so '{measured}'")
    if answer == measured:
        return Feedback(True, f"right: {summary}. Error bars alone could not have settled it: "
                              "the interval of the paired differences does.")
    return Feedback(False, f"the runs say otherwise: {summary}. Error bars show each arm's spread over "
                           "seeds; the paired interval removes what the seeds share.")


def _solution_1(labels: Tensor, K: int, a: float, T: float) -> Tensor:
    p_d = torch.full((labels.shape[0], K), (1 - a) / (K - 1))
    p_d[torch.arange(labels.shape[0]), labels] = a
    return F.softmax(p_d / T, dim=1)


def _solution_2(z_s: Tensor, y: Tensor, eps: float) -> Tensor:
    uniform_teacher = torch.zeros_like(z_s)                 # equal logits: 1/K for every class
    return losses.kd_loss(z_s, uniform_teacher, y, T=1.0, alpha=eps) + eps * math.log(z_s.shape[1])


_SOLUTIONS = {1: (_solution_1, "virtual_teacher"), 2: (_solution_2, "lsr_as_kd")}
_ANSWERS = {
    3: (f"Measured on MNIST-1D: {ANSWER_3} on the reporting seeds 100-104, and slightly lower (an "
        "interval below 0) on the seeds 200-204: at best no help. Label smoothing is a regulariser: "
        "it helps a student that fits its training set too confidently, like the CNN here. The MLP's "
        "problem is another one: it cannot reuse what it learns at one position of the signal at "
        "another (notebook 00), and softer targets do not fix that. A real teacher does help the MLP "
        "(several points), because its targets carry what the CNN learnt about the signals."),
    4: (f"On the reporting seeds 100-104: {ANSWER_4}, by about 3 points, with a paired interval above "
        "0. The error bars of the plot show each arm's spread over seeds, which includes what the "
        "seeds share (initial weights, batches); the paired interval removes it, so it decides. A careful answer adds 'on these "
        "seeds': on the seeds 200-204 one run with the untrained teacher stalled near 64% and the "
        "interval contains 0. The untrained teacher is nearly uniform, i.e. label smoothing: it beats "
        "the trained teacher because, at this scale, the CNN gains from smoothing and not from what "
        "the trained teacher knows."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _SOLUTIONS, _ANSWERS, notebook="notebook 03")
