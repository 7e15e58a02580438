"""Exercises for the notebook on many teachers (multi-teacher KD), each with a checker.

1. :func:`check_mixture_target` - write the multi-teacher soft target: the weighted average of
   the teachers' softened probabilities, a constant for the student;
2. :func:`check_confidence_weights` - write per-example teacher weights: each teacher's
   probability of the true class;
3. :func:`check_prediction` - predict, before the runs, whether the student of three teachers
   that see different views beats the best student of one of them;
4. :func:`check_reading` - read C7.3: three views against three seeds of one view.

:func:`solution` returns the instructor's answer to an exercise by number. A checker returns a
:class:`Feedback`, truthy when the answer is right; a wrong answer, or an exception inside the
learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from kdkit.exercises.feedback import (Feedback, check_comparison_reading, check_prediction_against, solution_text,
                                      tensor_answer, tensors_close)
from kdkit.experiments.runs import Comparison

Tensor = torch.Tensor


def _teachers(seed: int, count: int = 3, batch: int = 6, classes: int = 5) -> tuple[list[Tensor], Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = [3 * torch.randn(batch, classes, generator=generator, dtype=torch.float64) for _ in range(count)]
    labels = torch.randint(0, classes, (batch,), generator=generator)
    return logits, labels


# --------------------------------------------------------------------------------------
# Exercise 1: the mixture of the teachers' soft targets
# --------------------------------------------------------------------------------------

def reference_mixture_target(teacher_logits: Sequence[Tensor], weights: Sequence[float], T: float) -> Tensor:
    """``q = sum_j mu_j softmax(z_j / T) / sum_j mu_j``, shape (B, K), detached."""
    probs = torch.stack([F.softmax(z.detach() / T, dim=1) for z in teacher_logits])
    mu = torch.as_tensor(weights, dtype=probs.dtype)
    return (mu[:, None, None] * probs).sum(dim=0) / mu.sum()


def _mixture_variants(teacher_logits, weights, T) -> list[tuple[str, Tensor]]:
    """The usual wrong versions, each with the mistake it makes."""
    z = [t.detach() for t in teacher_logits]
    mu = torch.as_tensor(weights, dtype=z[0].dtype)
    stacked = torch.stack(z)
    softened = torch.stack([F.softmax(t / T, dim=1) for t in z])
    return [
        ("the weights are not normalised: divide by their sum, or the target is not a probability "
         "distribution (its rows do not sum to 1)", (mu[:, None, None] * softened).sum(dim=0)),
        ("you averaged the logits, then softened them: that is a different target (a normalised geometric "
         "mean of the teachers' probabilities), not the average of their soft targets",
         F.softmax((mu[:, None, None] * stacked).sum(dim=0) / mu.sum() / T, dim=1)),
        ("the teachers are not softened by T: divide their logits by T before the softmax",
         (mu[:, None, None] * torch.stack([F.softmax(t, dim=1) for t in z])).sum(dim=0) / mu.sum()),
        ("the weights are ignored: this is the uniform average", softened.mean(dim=0)),
        ("the softmax runs over the wrong dimension: over the classes (dim=1) of each example",
         (mu[:, None, None] * torch.stack([F.softmax(t / T, dim=0) for t in z])).sum(dim=0) / mu.sum()),
    ]


def check_mixture_target(fn: Callable[[list, list, float], Tensor]) -> Feedback:
    """Check ``fn(teacher_logits, weights, T)``: the weighted average of the teachers' softened
    probabilities, (B, K), equal to :func:`reference_mixture_target`, with no gradient to a teacher."""
    for seed, weights, T in ((0, [1.0, 2.0, 1.0], 4.0), (1, [0.9, 0.3, 0.6], 2.0)):
        logits, _ = _teachers(seed)
        for z in logits:
            z.requires_grad_(True)
        out = tensor_answer(fn, logits, list(weights), T)
        if isinstance(out, Feedback):
            return out
        expected = reference_mixture_target(logits, weights, T)
        if out.shape != expected.shape:
            return Feedback(False, f"the target must have one row per example and one column per class, "
                                   f"{tuple(expected.shape)}; got {tuple(out.shape)}")
        if not tensors_close(out, expected):
            for mistake, wrong in _mixture_variants(logits, weights, T):
                if tensors_close(out, wrong):
                    return Feedback(False, mistake + ".")
            return Feedback(False, "not the weighted average of softmax(z_j / T): compare a row of yours with "
                                   "reference_mixture_target on the same teachers.")
        if out.requires_grad:
            return Feedback(False, "the value is right, but gradient flows back into the teachers' logits: "
                                   "detach them (the target is a constant for the student; teachers are trained "
                                   "already and their logits are cached)")
    return Feedback(True, "right: sum_j mu_j softmax(z_j / T) / sum_j mu_j, a constant for the student. KD to this "
                          "target has the gradient of the weighted average of one KD loss per teacher.")


# --------------------------------------------------------------------------------------
# Exercise 2: per-example confidence weights
# --------------------------------------------------------------------------------------

def reference_confidence_weights(teacher_logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """(J, B): teacher j's probability (T = 1) of example b's true class, detached."""
    probs = torch.stack([F.softmax(z.detach(), dim=1) for z in teacher_logits])
    return probs[:, torch.arange(labels.shape[0]), labels]


def check_confidence_weights(fn: Callable[[list, Tensor], Tensor]) -> Feedback:
    """Check ``fn(teacher_logits, labels)``: a (J, B) tensor of each teacher's probability of the
    true class of each example, equal to :func:`reference_confidence_weights`, detached."""
    for seed in (0, 1):
        logits, labels = _teachers(seed)
        for z in logits:
            z.requires_grad_(True)
        out = tensor_answer(fn, logits, labels)
        if isinstance(out, Feedback):
            return out
        expected = reference_confidence_weights(logits, labels)
        if out.shape == expected.shape[::-1] and tensors_close(out.T, expected):
            return Feedback(False, f"the values are right but transposed: one row per teacher, (J, B) = "
                                   f"{tuple(expected.shape)}")
        if out.shape != expected.shape:
            return Feedback(False, f"one row per teacher and one column per example: {tuple(expected.shape)}, "
                                   f"got {tuple(out.shape)}")
        right = torch.stack([(z.detach().argmax(dim=1) == labels).to(z.dtype) for z in logits])
        if tensors_close(out, right):
            return Feedback(False, "that is 1 where a teacher's top class is right and 0 elsewhere: use its "
                                   "probability of the true class, so that a hesitant teacher counts for less "
                                   "than a sure one")
        raw = torch.stack([z.detach()[torch.arange(labels.shape[0]), labels] for z in logits])
        if tensors_close(out, raw):
            return Feedback(False, "those are the logits of the true class: apply the softmax over the classes first "
                                   "(weights must be >= 0)")
        if not tensors_close(out, expected):
            return Feedback(False, "not softmax(z_j)[b, y_b]: pick, for each teacher j and example b, the "
                                   "probability of the true class y_b (the softmax at T = 1, over the classes)")
        if out.requires_grad:
            return Feedback(False, "the values are right, but they carry gradient back to the teachers: detach")
    return Feedback(True, "right: each teacher counts, on each example, as much as it believes the right answer. "
                          "A teacher that is wrong on an example hardly counts there, whatever its accuracy.")


# --------------------------------------------------------------------------------------
# Exercises 3 and 4: predict, then read the measured comparisons
# --------------------------------------------------------------------------------------

def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 3: the student of the three views against the best single-teacher student."""
    return check_prediction_against(prediction, comparison,
                                    what="the student of three views against the best single-teacher student")


READING_CHOICES = {"a": "three views", "b": "three seeds of the raw view", "c": "these seeds cannot tell"}


def check_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 4: three views (treatment) against three seeds of the raw view (control)."""
    return check_comparison_reading(
        answer, comparison, READING_CHOICES, difference="views minus seeds",
        explanation="Diversity helps a mixture only if each member is worth hearing: look at what the spectrum "
                    "teacher knows, and at what the difference teacher passes on alone.")


# --------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------

def _solution_1(teacher_logits, weights, T):
    probs = torch.stack([torch.softmax(z.detach() / T, dim=1) for z in teacher_logits])   # (J, B, K)
    mu = torch.as_tensor(weights, dtype=probs.dtype)
    return (mu[:, None, None] * probs).sum(dim=0) / mu.sum()


def _solution_2(teacher_logits, labels):
    probs = torch.stack([torch.softmax(z.detach(), dim=1) for z in teacher_logits])       # (J, B, K)
    return probs[:, torch.arange(len(labels)), labels]                                     # (J, B)


_CODE = {1: (_solution_1, "mixture_target"), 2: (_solution_2, "confidence_weights")}

_REASONING = {
    3: ("How to reason: a mixture helps where the teachers' mistakes differ and each is right often enough to "
        "be worth hearing; it hurts where a weak teacher's opinion dilutes a strong one. Look at the teachers' "
        "accuracies and at how often they disagree, then let the paired interval decide."),
    4: ("How to read it: each seed gives one difference, views minus seeds, same initial weights and batches. "
        "The 95% interval of those differences decides: entirely above 0 -> (a), entirely below 0 -> (b), "
        "containing 0 -> (c)."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _CODE, _REASONING, notebook="the many-teachers notebook")
