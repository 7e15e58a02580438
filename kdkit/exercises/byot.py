"""Exercises for the notebook on Be Your Own Teacher (Zhang et al., ICCV 2019), each with a checker.

1. :func:`check_exit_loss` - write a shallow exit's loss: its cross-entropy and the KL from the
   network's own deepest exit, softened by T, the deepest exit held constant;
2. :func:`check_early_exit` - write the early-exit rule: each example leaves at the first exit
   sure enough of its answer, and the deepest exit answers the rest;
3. :func:`check_prediction` - predict, before looking, whether the distillation terms (KD from
   the deepest exit and the feature hint) add anything to deep supervision with a tenth of
   the data;
4. :func:`check_reading` - read the measured comparison of the exits' ensemble with the
   deepest exit.

:func:`solution` returns the instructor's answer to an exercise by number. A checker returns a
:class:`Feedback`, truthy when the answer is right; a wrong answer, or an exception inside the
learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.exercises.feedback import (Feedback, call_answer, check_comparison_reading, check_prediction_against,
                                      gradient_problem, solution_text, tensor_answer, tensors_close)
from kdkit.experiments.runs import Comparison

Tensor = torch.Tensor

BATCH, CLASSES = 16, 10
_SETTINGS = ({"alpha": 0.3, "T": 3.0}, {"alpha": 0.7, "T": 0.5})   # two settings: a T^2 slip shows in both


def _logits(seed: int, scale: float = 2.0) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z_exit = scale * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64)
    z_deep = scale * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64)
    return z_exit, z_deep, torch.randint(0, CLASSES, (BATCH,), generator=generator)


# --------------------------------------------------------------------------------------
# Exercise 1: a shallow exit's loss
# --------------------------------------------------------------------------------------

def reference_exit_loss(z_exit: Tensor, z_deepest: Tensor, y: Tensor, *, alpha: float, T: float) -> Tensor:
    """``(1 - alpha) CE(z_i, y) + alpha T^2 KL(p_C^T || p_i^T)``, the deepest exit detached."""
    return (1 - alpha) * losses.cross_entropy(z_exit, y) + alpha * losses.distillation_kl(z_exit, z_deepest, T=T)


def _exit_loss_variants(z_exit, z_deep, y, *, alpha, T) -> list[tuple[str, Tensor]]:
    """The usual wrong versions of the loss (float64), each with the mistake it makes."""
    z_exit, z_deep = z_exit.detach(), z_deep.detach()
    ce = F.cross_entropy(z_exit, y)
    log_p, log_q = F.log_softmax(z_exit / T, dim=1), F.log_softmax(z_deep / T, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=1).mean()            # KL(p_C || p_i)
    reversed_kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()   # KL(p_i || p_C)
    kl_at_1 = losses.distillation_kl(z_exit, z_deep, T=1.0)
    return [
        ("the soft term is not multiplied by T^2: its gradient then shrinks as 1/T^2, and alpha means "
         "something different at every temperature (the authors' later code does this; the ICCV "
         "reimplementation and Hinton's KD keep T^2)", (1 - alpha) * ce + alpha * kl),
        ("the KL is the wrong way round: KL(p_i || p_C) instead of KL(p_C || p_i); the deepest exit is "
         "the target: F.kl_div(log_softmax(z_exit / T), softmax(z_deepest / T))",
         (1 - alpha) * ce + alpha * T * T * reversed_kl),
        ("alpha weights the wrong term: here alpha is the weight of the distillation term and 1 - alpha "
         "that of the cross-entropy", alpha * ce + (1 - alpha) * T * T * kl),
        ("the KL is averaged over the classes as well as the examples (reduction=\"mean\" divides by "
         "B*K); use reduction=\"batchmean\"", (1 - alpha) * ce + alpha * T * T * kl / CLASSES),
        ("only the deepest exit's logits are softened by T: divide both logits by T",
         (1 - alpha) * ce + alpha * T * T * (F.softmax(z_deep / T, dim=1)
                                              * (log_q - F.log_softmax(z_exit, dim=1))).sum(dim=1).mean()),
        ("the temperature is missing: the KL is taken at T = 1", (1 - alpha) * ce + alpha * kl_at_1),
        ("the cross-entropy on the labels is missing", alpha * T * T * kl),
    ]


def check_exit_loss(fn: Callable[..., Tensor]) -> Feedback:
    """Check ``fn(z_exit, z_deepest, y, alpha=..., T=...)``: a shallow exit's loss, a scalar.

    It must equal :func:`reference_exit_loss` in value and in gradient w.r.t. ``z_exit``, and
    send no gradient to ``z_deepest`` (the network's own deepest exit: a teacher, held constant).
    """
    for seed, settings in enumerate(_SETTINGS):
        z_exit, z_deep, y = _logits(seed)
        z_exit.requires_grad_(True), z_deep.requires_grad_(True)
        out = tensor_answer(fn, z_exit, z_deep, y.clone(), **settings)
        if isinstance(out, Feedback):
            return out
        if out.numel() != 1:
            return Feedback(False, f"return one number (a 0-d tensor, the batch mean), got shape {tuple(out.shape)}")
        out = out.reshape(())
        expected = reference_exit_loss(z_exit, z_deep, y, **settings)
        where = f"at alpha = {settings['alpha']}, T = {settings['T']}"
        if not tensors_close(out, expected):
            for mistake, wrong in _exit_loss_variants(z_exit, z_deep, y, **settings):
                if tensors_close(out, wrong):
                    return Feedback(False, f"{where}: {mistake}.")
            return Feedback(False, f"{where} your loss is {float(out):.5f}, the reference {float(expected):.5f}: "
                                   "compare term by term with (1 - alpha) CE + alpha T^2 KL(p_C^T || p_i^T).")
        problem = gradient_problem(out, expected, z_exit, [z_deep], learner_name="z_exit", leak=_deepest_leak)
        if problem is not None:
            return problem
    return Feedback(True, "right: (1 - alpha) CE + alpha T^2 KL(p_C^T || p_i^T), with no gradient into the "
                          "deepest exit. Without the detach the deepest exit would be pulled towards its own "
                          "shallow students, the teacher learning from the class.")


def _deepest_leak(_j: int) -> str:
    return ("gradient flows into the deepest exit (z_deepest): detach it. It is the teacher of this loss; "
            "it is trained by its own cross-entropy, and a teacher pulled towards a weaker exit gets worse")


# --------------------------------------------------------------------------------------
# Exercise 2: the early-exit rule
# --------------------------------------------------------------------------------------

def reference_exit_choice(probabilities: Sequence[Tensor], threshold: float) -> Tensor:
    """The index of the exit each example leaves at: the first whose top probability reaches
    ``threshold``; the last exit answers every example still undecided. Shape (B,)."""
    return _exit_choice(probabilities, threshold)


def _exit_choice(probabilities: Sequence[Tensor], threshold: float, *, strict: bool = False) -> Tensor:
    choice = torch.full((len(probabilities[0]),), len(probabilities) - 1, dtype=torch.long)
    for index in reversed(range(len(probabilities) - 1)):           # the first confident exit wins
        top = probabilities[index].max(dim=1).values
        choice[top > threshold if strict else top >= threshold] = index
    return choice


def _probabilities(seed: int, exits: int = 3, batch: int = 64) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [F.softmax(3 * torch.randn(batch, CLASSES, generator=generator), dim=1) for _ in range(exits)]


def check_early_exit(fn: Callable[[Sequence[Tensor], float], Tensor]) -> Feedback:
    """Check ``fn(probabilities, threshold)``: ``probabilities`` is a list of (B, K) tensors, one
    per exit, shallowest first; return the (B,) index of the exit each example leaves at."""
    for seed, threshold in ((0, 0.6), (1, 0.9)):
        probs = _probabilities(seed)
        # one example exactly at the threshold: ">=" and ">" must disagree on it
        probs[0][0] = torch.full((CLASSES,), (1 - threshold) / (CLASSES - 1))
        probs[0][0, 0] = threshold
        out = call_answer(fn, [p.clone() for p in probs], threshold)
        if isinstance(out, Feedback):
            return out
        if not isinstance(out, Tensor) or out.shape != (len(probs[0]),):
            return Feedback(False, f"return a tensor of shape ({len(probs[0])},): one exit index per example")
        expected = reference_exit_choice(probs, threshold)
        if torch.equal(out.long(), expected):
            continue
        return _diagnose_exit_choice(out.long(), probs, threshold)
    return Feedback(True, "right: each example stops at the first exit whose top probability reaches the "
                          "threshold, and the deepest exit answers whatever is left. Raising the threshold "
                          "sends more examples deeper: more compute, (usually) more accuracy.")


def _diagnose_exit_choice(out: Tensor, probs: Sequence[Tensor], threshold: float) -> Feedback:
    confidence = torch.stack([p.max(dim=1).values for p in probs])      # (exits, B)
    if torch.equal(out, confidence.argmax(dim=0)):
        return Feedback(False, "you picked the most confident exit: that needs every exit's answer, so every "
                               "example pays for the whole network. Stop at the *first* exit that is sure enough.")
    if torch.equal(out, _exit_choice(probs, threshold, strict=True)):
        return Feedback(False, "an example whose confidence *equals* the threshold must stop: use >=, not >.")
    if bool((out >= len(probs)).any()) or bool((out < 0).any()):
        return Feedback(False, f"exit indices run from 0 to {len(probs) - 1}; some of yours are outside")
    undecided = (confidence[:-1] < threshold).all(dim=0)
    if bool((out[undecided] != len(probs) - 1).any()):
        return Feedback(False, "an example that no shallow exit is sure of must go to the deepest exit "
                               f"(index {len(probs) - 1}), whatever its confidence there.")
    return Feedback(False, "some examples leave at the wrong exit: go through the exits in order and stop at "
                           "the first whose top probability is >= threshold.")


# --------------------------------------------------------------------------------------
# Exercises 3 and 4: predict a comparison, read a measurement
# --------------------------------------------------------------------------------------

def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 3: was the prediction ("higher", "lower", "no clear difference") for the full BYOT
    loss against deep supervision alone (deepest exit, a tenth of the data) what was measured?"""
    return check_prediction_against(prediction, comparison,
                                    what="BYOT (ds + KD + hint) against deep supervision alone, deepest exit, "
                                         "a tenth of the data")


READING_CHOICES = {"a": "the ensemble of the exits", "b": "the deepest exit alone", "c": "these seeds cannot tell"}


def check_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 4: in the measured comparison of the exits' ensemble (treatment) with the deepest
    exit (control), which is higher, or can these seeds not tell?"""
    return check_comparison_reading(
        answer, comparison, READING_CHOICES, difference="ensemble minus deepest exit",
        explanation="The ensemble costs nothing extra here: every exit is computed on the way to the deepest one.")


# --------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------

def _solution_1(z_exit, z_deepest, y, *, alpha, T):
    teacher = F.softmax(z_deepest.detach() / T, dim=1)            # the deepest exit: a constant target
    kl = F.kl_div(F.log_softmax(z_exit / T, dim=1), teacher, reduction="batchmean")
    return (1 - alpha) * F.cross_entropy(z_exit, y) + alpha * T * T * kl


def _solution_2(probabilities, threshold):
    last = len(probabilities) - 1
    choice = torch.full((len(probabilities[0]),), last, dtype=torch.long)
    for index in reversed(range(last)):                          # earlier exits overwrite later ones
        choice[probabilities[index].max(dim=1).values >= threshold] = index
    return choice


_CODE = {1: (_solution_1, "exit_loss"), 2: (_solution_2, "exit_choice")}

_REASONING = {
    3: ("How to reason: KD from the deepest exit and the hint both pull the shallow exits towards what the "
        "deepest exit already does. The backbone they share gets gradients that mostly repeat what deep "
        "supervision gives; with few data, the deepest exit's soft targets carry some extra information "
        "(which wrong classes look alike), but it is the network's own, learned from the same few signals. "
        "Independent reruns (an open issue of the ICCV reimplementation, the DSN numbers next to BYOT's) "
        "found the labels at every exit doing most of the work. Then let the paired interval decide."),
    4: ("How to read it: each seed gives one difference, ensemble minus deepest exit, from the same "
        "trained network. The 95% interval of those differences decides: entirely above 0 -> (a), "
        "entirely below 0 -> (b), containing 0 -> (c). An ensemble helps when its members err on different "
        "examples; the shallow exits are weaker, so they help only if their errors are not the deepest "
        "exit's errors, and the mean of the probabilities lets a confident deep exit outvote them."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _CODE, _REASONING, notebook="the BYOT notebook")
