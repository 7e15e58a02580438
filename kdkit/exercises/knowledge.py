"""Exercises for the tour of the kinds of knowledge (response, feature, relation; cross-modal KD).

1. :func:`check_fixed_snippet` - "spot the bugs": a KD loss of the kind found in blog posts
   (:data:`BUGGY_SNIPPET`), to be rewritten correctly; the checker names each bug fixed and each
   one still there.
2. :func:`check_similarity_matrix` - similarity-preserving KD's (B, B) matrix of one batch.
3. :func:`check_prediction` - predict whether adding similarity preservation to KD helps the MLP.
4. :func:`check_reading` - read the untrained-teacher control for RKD and the MLP.

:func:`solution` returns the instructor's answer to an exercise by number. A checker returns a
:class:`Feedback`, truthy when the answer is right; a wrong answer, or an exception inside the
learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

import copy
import itertools
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kdkit.experiments.runs import Comparison
from kdkit.exercises.feedback import (Feedback, call_answer, check_comparison_reading, check_prediction_against,
                                     solution_text, tensor_answer, tensors_close)

Tensor = torch.Tensor

# --------------------------------------------------------------------------------------
# Exercise 1: spot the bugs
# --------------------------------------------------------------------------------------

BUGGY_SNIPPET = '''\
criterion = nn.KLDivLoss()

def distillation_loss(student, teacher, inputs, labels, T=4.0, alpha=0.9):
    teacher_logits = teacher(inputs)
    student_logits = student(inputs)
    return criterion(F.log_softmax(student_logits / T), F.softmax(teacher_logits / T))
'''
"""The shape of the KD step that circulates in blog posts (it is the heart of a cross-modal KD
example in the sources of this workbook). It runs, and every number it prints looks plausible."""

BUGS = {
    "reduction": "nn.KLDivLoss() averages over the classes as well as the examples (reduction='mean'): the KL "
                 "is divided by the number of classes K. Use reduction='batchmean' (sum over classes, mean "
                 "over examples), the true KL per example",
    "T squared": "the soft term is not multiplied by T**2: its gradient then shrinks like 1/T**2 as the "
                 "temperature rises, so T silently changes the weight of the teacher (Hinton et al. 2015, section 2)",
    "labels": "the labels are not used: the loss should be (1 - alpha) * CE(student, labels) + alpha * T**2 * KL",
    "train mode": "the teacher runs in training mode: batch norm normalises with the batch's statistics (and "
                  "updates its running averages, changing the teacher for good) and dropout would be on. Put "
                  "it in eval mode (teacher.eval()) before using its outputs",
    "teacher gradient": "the teacher's outputs carry gradient: backward() then computes gradients for the "
                        "teacher's weights too (wasted work, and an optimiser over all parameters would move "
                        "the teacher). Compute them under torch.no_grad() or .detach() them",
    "softmax dim": "softmax and log_softmax are called without dim: PyTorch guesses the dimension (here the "
                   "right one, by luck of the shape; for a (B, K, L) output it would pick the batch) and warns. "
                   "Say dim=1, the classes",
}
"""Each bug of :data:`BUGGY_SNIPPET` and why it matters, in the order the checker reports them."""


def _networks(seed: int) -> tuple[nn.Module, nn.Module, Tensor, Tensor]:
    """A student, a teacher with batch norm (in training mode, as after its own training), a batch."""
    with torch.random.fork_rng(devices=[]):            # the learner's random state is left alone
        torch.manual_seed(seed)
        teacher = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 5))
        student = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))
        with torch.no_grad():                           # running statistics far from any one batch's
            teacher[1].running_mean.normal_(0.0, 1.0)
            teacher[1].running_var.uniform_(0.5, 2.0)
        inputs = torch.randn(8, 12)
        labels = torch.randint(0, 5, (8,))
    return student.double(), teacher.double().train(), inputs.double(), labels


def _loss_variants(student, teacher, inputs, labels, T: float, alpha: float) -> list[tuple[frozenset, Tensor]]:
    """The loss with every combination of the value-changing bugs, each with the set of bugs in it
    (the fixed loss first; the labels can be left out in two ways: no weights at all, or alpha only)."""
    with torch.no_grad():
        z_s = student(inputs)
        z_t = {"eval": copy.deepcopy(teacher).eval()(inputs), "train": copy.deepcopy(teacher).train()(inputs)}
    classes = z_s.shape[1]
    variants = []
    for mode, mean, no_t2, hard in itertools.product(("eval", "train"), (False, True), (False, True),
                                                     ("both", "soft only", "alpha soft")):
        log_p = F.log_softmax(z_s / T, dim=1)
        q = F.softmax(z_t[mode] / T, dim=1)
        kl = (q * (q.log() - log_p)).sum(dim=1).mean() / (classes if mean else 1)
        soft = kl * (1 if no_t2 else T * T)
        value = {"both": (1 - alpha) * F.cross_entropy(z_s, labels) + alpha * soft,
                 "soft only": soft, "alpha soft": alpha * soft}[hard]
        bugs = {"train mode"} if mode == "train" else set()
        bugs |= {"reduction"} if mean else set()
        bugs |= {"T squared"} if no_t2 else set()
        bugs |= {"labels"} if hard != "both" else set()
        variants.append((frozenset(bugs), value))
    return variants


def _call_recording_warnings(fn, *args):
    """``fn(*args)`` and the warnings it raised, or the Feedback that explains why it failed."""
    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = fn(*args)
        return out, [str(w.message) for w in caught]
    return call_answer(run)


def check_fixed_snippet(fn: Callable, *, T: float = 4.0, alpha: float = 0.9) -> Feedback:
    """Check ``fn(student, teacher, inputs, labels, T, alpha)``, the learner's fixed
    :data:`BUGGY_SNIPPET`: one batch's loss ``(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)``, the KL
    summed over classes and averaged over the batch, from the teacher in eval mode, with no
    gradient to the teacher. The teacher is handed over in training mode, as it is after its own
    training. Names every bug of :data:`BUGS` fixed and every one still there."""
    student, teacher, inputs, labels = _networks(seed=0)
    original = copy.deepcopy(teacher)
    answer = _call_recording_warnings(fn, student, teacher, inputs, labels, T, alpha)
    if isinstance(answer, Feedback):
        return answer
    out, caught = answer
    if not isinstance(out, Tensor) or out.numel() != 1:
        return Feedback(False, "return the loss: one number, a 0-d tensor")
    out = out.reshape(())
    if not out.requires_grad:
        return Feedback(False, "the loss has no gradient for the student: do not detach the student's logits "
                               "(or call .item()) inside the function")
    variants = _loss_variants(student, original, inputs, labels, T, alpha)
    present = next((set(bugs) for bugs, value in variants
                    if torch.allclose(out.detach().double(), value, rtol=1e-6, atol=1e-9)), None)
    if present is None:
        reference = float(variants[0][1])
        return Feedback(False, f"your loss is {float(out.detach()):.5f}, the fixed snippet's {reference:.5f}, and the difference "
                               "is none of the snippet's bugs: compare term by term with (1 - alpha) * CE + "
                               "alpha * T**2 * KL(p_t || p_s), the KL summed over classes, averaged over the batch.")
    after = teacher.state_dict()
    if any(not torch.equal(value, after[name]) for name, value in original.state_dict().items()):
        present.add("train mode")                     # its batch-norm running statistics moved
    grads = torch.autograd.grad(out, list(teacher.parameters()), allow_unused=True)
    if any(g is not None and bool(g.abs().max() > 0) for g in grads):
        present.add("teacher gradient")
    if any("Implicit dimension choice" in message for message in caught):
        present.add("softmax dim")
    return _report(present)


def _report(present: set[str]) -> Feedback:
    fixed = [name for name in BUGS if name not in present]
    if not present:
        return Feedback(True, f"all {len(BUGS)} bugs fixed: " + "; ".join(fixed) + ".")
    still = " ".join(f"({i}) {BUGS[name]}." for i, name in enumerate((n for n in BUGS if n in present), start=1))
    done = f" Fixed already: {', '.join(fixed)}." if fixed else ""
    return Feedback(False, f"{len(present)} of {len(BUGS)} bugs still there. {still}{done}")


# --------------------------------------------------------------------------------------
# Exercise 2: the similarity matrix of one batch
# --------------------------------------------------------------------------------------

def reference_similarity_matrix(features: Tensor) -> Tensor:
    """Tung & Mori's ``G = normalise_rows(F F^T)`` for features (B, ...) flattened to (B, D)."""
    f = features.flatten(1)
    return F.normalize(f @ f.t(), dim=1)


def check_similarity_matrix(fn: Callable[[Tensor], Tensor]) -> Feedback:
    """Check ``fn(features) -> (B, B)`` against :func:`reference_similarity_matrix`, on feature maps
    (B, C, L) and on vectors (B, D), and name the usual mistakes."""
    generator = torch.Generator().manual_seed(0)
    for shape in ((6, 4, 5), (5, 7)):
        features = torch.relu(torch.randn(shape, generator=generator))
        out = tensor_answer(fn, features)
        if isinstance(out, Feedback):
            return out
        expected = reference_similarity_matrix(features)
        f = features.flatten(1)
        if out.shape == (f.shape[1], f.shape[1]):
            return Feedback(False, f"that is a ({f.shape[1]}, {f.shape[1]}) matrix over the features (F^T F): SP "
                                   f"compares the *examples* of the batch, G = F F^T, ({len(f)}, {len(f)})")
        if out.shape != expected.shape:
            return Feedback(False, f"one row and one column per example: {tuple(expected.shape)}, got "
                                   f"{tuple(out.shape)} (flatten each example's features first)")
        if tensors_close(out, f @ f.t()):
            return Feedback(False, "right products, but each row must be L2-normalised: otherwise the student "
                                   "must match the teacher's scale, which SP means to ignore")
        if tensors_close(out, F.normalize(f, dim=1) @ F.normalize(f, dim=1).t()):
            return Feedback(False, "that is the cosine similarity of the examples (normalised before the product); "
                                   "SP normalises each row of the product F F^T (Tung & Mori)")
        if tensors_close(out, F.normalize(f @ f.t(), dim=0)):
            return Feedback(False, "normalise the rows (dim=1), not the columns")
        if not tensors_close(out, expected):
            return Feedback(False, "not normalise_rows(F F^T) with F the features flattened to (B, D)")
    return Feedback(True, "right: row i says how example i's features line up with every other example's. "
                          "The student's matrix has the same shape whatever its width, which is why SP works "
                          "across architectures.")


# --------------------------------------------------------------------------------------
# Exercises 3 and 4: predict, then read the measured comparisons
# --------------------------------------------------------------------------------------

def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 3: the MLP taught with similarity preservation and KD against KD alone."""
    return check_prediction_against(prediction, comparison,
                                    what="the MLP with similarity preservation and KD against KD alone")


READING_CHOICES = {"a": "the trained teacher", "b": "the untrained teacher", "c": "these seeds cannot tell"}


def check_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 4: RKD from the trained teacher (treatment) against the same network untrained."""
    return check_comparison_reading(
        answer, comparison, READING_CHOICES, difference="trained teacher minus untrained teacher",
        explanation="A relation loss can help as a regulariser whatever the teacher knows; only the control "
                    "with an untrained teacher separates that from knowledge.")


# --------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------

def _solution_1(student, teacher, inputs, labels, T=4.0, alpha=0.9):
    teacher.eval()                                          # batch norm with its running statistics
    with torch.no_grad():                                   # no gradient, no graph for the teacher
        teacher_logits = teacher(inputs)
    student_logits = student(inputs)
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1),
                    reduction="batchmean") * T**2
    return (1 - alpha) * F.cross_entropy(student_logits, labels) + alpha * soft


def _solution_2(features):
    f = features.flatten(1)                                 # (B, D)
    return F.normalize(f @ f.t(), dim=1)                    # (B, B), each row of unit length


_CODE = {1: (_solution_1, "distillation_loss"), 2: (_solution_2, "similarity_matrix")}

_REASONING = {
    3: ("How to reason: KD gives the student the teacher's answers; similarity preservation gives it how the "
        "teacher groups the examples of a batch, which an MLP (no positions, no weight sharing) cannot get from "
        "the answers alone. Whether the two add up is an empirical question: let the paired interval decide."),
    4: ("How to read it: each seed gives one difference, trained minus untrained teacher, same initial weights "
        "and batches. The 95% interval of those differences decides: entirely above 0 -> (a), entirely below 0 "
        "-> (b), containing 0 -> (c)."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _CODE, _REASONING, notebook="the tour of the kinds of knowledge")
