"""Exercises for notebook 02 (Hinton, Vinyals & Dean 2015), each with a checker.

* :func:`check_kd_loss` - write the KD loss ``(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)``;
* :func:`check_soft_gradient` - write its soft term's gradient in closed form (the paper's eq. 2);
* :func:`check_choose_bias` - choose the omitted class's bias on validation data.

A checker calls the learner's function on random inputs, compares it with kdkit's reference
and, when they differ, names the likely mistake. It returns a :class:`Feedback`, which is
truthy when the answer is right and displays as its message. It never raises for a wrong
answer: an exception inside the learner's function is reported as feedback too.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.exercises.feedback import Feedback, call_answer
from kdkit.experiments.hinton import BIAS_GRID, choose_bias, class_accuracy, with_bias

Tensor = torch.Tensor

# (T, alpha) settings every answer is tried on: a T of 1 cannot reveal a missing T^2.
_SETTINGS = ((1.0, 0.5), (4.0, 0.9), (20.0, 0.3))


def _inputs(seed: int = 0, batch: int = 16, classes: int = 10):
    generator = torch.Generator().manual_seed(seed)
    z_s = torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    z_t = 3 * torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=generator)
    return z_s, z_t, y


def _close(a, b, rtol=1e-5, atol=1e-7) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


# --------------------------------------------------------------------------------------
# Exercise 1: the KD loss
# --------------------------------------------------------------------------------------

def _kl(p_t: Tensor, log_p_s: Tensor) -> Tensor:
    """Per-example KL(p_t || p_s), shape (B,)."""
    return (p_t * (p_t.clamp_min(1e-300).log() - log_p_s)).sum(dim=1)


def _kd_variants(z_s, z_t, y, T, alpha) -> dict[str, Tensor]:
    """The usual wrong versions of the KD loss, each named by the mistake it makes."""
    p_t, log_p_s = F.softmax(z_t / T, dim=1), F.log_softmax(z_s / T, dim=1)
    p_s, log_p_t = log_p_s.exp(), F.log_softmax(z_t / T, dim=1)
    ce = F.cross_entropy(z_s, y)
    kl = _kl(p_t, log_p_s).mean()
    K = z_s.shape[1]
    return {
        "the soft term is missing its T² factor (its gradients shrink like 1/T², so high T "
        "silently turns distillation off)": (1 - alpha) * ce + alpha * kl,
        "the KL is averaged over classes as well as examples (reduction=\"mean\" divides by B*K; "
        "use \"batchmean\", which sums over classes and averages over the batch)":
            (1 - alpha) * ce + alpha * T * T * kl / K,
        "the KL divergence is the wrong way round: KL(p_s || p_t) instead of KL(p_t || p_s) "
        "(F.kl_div(input, target) takes the *student's* log-probabilities as input and the "
        "teacher's probabilities as target)":
            (1 - alpha) * ce + alpha * T * T * (p_s * (log_p_s - log_p_t)).sum(dim=1).mean(),
        "alpha weights the wrong term: in kdkit alpha is the weight of the distillation term, "
        "(1 - alpha) that of the cross-entropy": alpha * ce + (1 - alpha) * T * T * kl,
        "the student's logits are not divided by T in the soft term (both sides must be softened)":
            (1 - alpha) * ce + alpha * T * T * _kl(p_t, F.log_softmax(z_s, dim=1)).mean(),
        "the cross-entropy term uses the softened student (z_s / T); the hard-label term is at T = 1":
            (1 - alpha) * F.cross_entropy(z_s / T, y) + alpha * T * T * kl,
    }


def check_kd_loss(my_kd_loss: Callable) -> Feedback:
    """Exercise 1: ``my_kd_loss(z_s, z_t, y, T, alpha)`` must equal :func:`kdkit.losses.kd_loss`.

    Tried at several (T, alpha) on random float64 logits (B = 16, K = 10): values, the
    gradient w.r.t. the student's logits, and that no gradient reaches the teacher.
    """
    for T, alpha in _SETTINGS:
        z_s, z_t, y = _inputs()
        z_s.requires_grad_(True)
        z_t.requires_grad_(True)
        mine = call_answer(my_kd_loss, z_s, z_t, y, T, alpha)
        if isinstance(mine, Feedback):
            return mine
        if not isinstance(mine, torch.Tensor) or mine.numel() != 1:
            return Feedback(False, f"return one number (a scalar tensor), got {type(mine).__name__} "
                                   f"of shape {tuple(getattr(mine, 'shape', ()))}")
        reference = losses.kd_loss(z_s, z_t, y, T=T, alpha=alpha)
        if not _close(mine.reshape(()).detach(), reference.detach()):
            for mistake, value in _kd_variants(z_s.detach(), z_t.detach(), y, T, alpha).items():
                if _close(mine.reshape(()).detach(), value):
                    return Feedback(False, f"at T={T:g}, alpha={alpha:g}: {mistake}.")
            return Feedback(False, f"at T={T:g}, alpha={alpha:g} your loss is {float(mine):.5f}, "
                                   f"kdkit's is {float(reference):.5f}. Compare term by term with "
                                   "(1 - alpha) CE(z_s, y) + alpha T² KL(softmax(z_t/T) || softmax(z_s/T)).")
        if not mine.requires_grad:
            return Feedback(False, "your loss has no gradient: do not detach the student's logits "
                                   "(or call .item()) inside the loss")
        grads = torch.autograd.grad(mine.reshape(()), [z_s, z_t], allow_unused=True)
        if grads[1] is not None and bool(grads[1].abs().max() > 0):
            return Feedback(False, "the value is right, but gradient flows into the teacher's logits: "
                                   "use z_t.detach() (the teacher is frozen)")
        ref_grad = torch.autograd.grad(reference, z_s)[0]
        if grads[0] is None or not _close(grads[0], ref_grad):
            return Feedback(False, "the value is right but the gradient w.r.t. z_s is not: "
                                   "is part of the loss computed from a detached copy?")
    return Feedback(True, "your KD loss matches kdkit.losses.kd_loss in value and gradient, "
                          "and the teacher receives no gradient.")


# --------------------------------------------------------------------------------------
# Exercise 2: the gradient of the soft term in closed form
# --------------------------------------------------------------------------------------

def reference_soft_gradient(z_s: Tensor, z_t: Tensor, T: float) -> Tensor:
    """d/dz_s of ``T^2 KL(p_t^T || p_s^T)`` (batch mean) by autograd, shape (B, K)."""
    z = z_s.detach().clone().requires_grad_(True)
    return torch.autograd.grad(losses.distillation_kl(z, z_t, T=T), z)[0]


def check_soft_gradient(my_soft_gradient: Callable) -> Feedback:
    """Exercise 2: ``my_soft_gradient(z_s, z_t, T)`` = gradient of ``T^2 KL`` (batch mean), by hand.

    The expected answer is ``T * (softmax(z_s/T) - softmax(z_t/T)) / B`` (Hinton's equation 2,
    times the T^2 factor, divided by the batch size because the loss is a batch mean).
    """
    z_s, z_t, _ = _inputs(seed=1)
    B = z_s.shape[0]
    for T in (1.0, 4.0, 20.0):
        mine = call_answer(my_soft_gradient, z_s.clone(), z_t.clone(), T)
        if isinstance(mine, Feedback):
            return mine
        if not isinstance(mine, torch.Tensor) or mine.shape != z_s.shape:
            return Feedback(False, f"return a tensor of the logits' shape {tuple(z_s.shape)}, "
                                   f"got {tuple(getattr(mine, 'shape', ()))}")
        reference = reference_soft_gradient(z_s, z_t, T)
        if _close(mine, reference):
            continue
        p_s, p_t = F.softmax(z_s / T, dim=1), F.softmax(z_t / T, dim=1)
        mistakes = {
            "you forgot to divide by the batch size B: the loss is a mean over the batch": T * (p_s - p_t),
            "the sign is reversed: the gradient pushes p_s towards p_t, so it is (p_s - p_t), "
            "not (p_t - p_s)": -reference,
            "this is the gradient without the T² factor ((1/T)(p_s - p_t), the paper's equation 2); "
            "the loss here includes T², which turns 1/T into T": (p_s - p_t) / (T * B),
            "the probabilities must be softened with T on both sides": T * (F.softmax(z_s, 1) - F.softmax(z_t, 1)) / B,
        }
        for mistake, value in mistakes.items():
            if _close(mine, value):
                return Feedback(False, f"at T={T:g}: {mistake}.")
        return Feedback(False, f"at T={T:g} your gradient differs from autograd's "
                               f"(largest difference {float((mine - reference).abs().max()):.3g}).")
    return Feedback(True, "your closed-form gradient T (p_s^T - p_t^T) / B matches autograd at T = 1, 4 and 20.")


# --------------------------------------------------------------------------------------
# Exercise 3: choosing the bias of the omitted class
# --------------------------------------------------------------------------------------

def _bias_problem(seed: int = 0, n: int = 400, classes: int = 10, omitted: int = 3):
    """Logits of a student that under-scores ``omitted`` (as after an omitted-class transfer set)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    logits = torch.randn(n, classes, generator=generator) + 4 * F.one_hot(labels, classes)
    logits[:, omitted] -= 5.0
    return logits, labels, omitted


def check_choose_bias(my_choose_bias: Callable) -> Feedback:
    """Exercise 3: ``my_choose_bias(val_logits, val_labels, cls, biases)`` returns one of ``biases``.

    It must pick the bias that maximises *overall* accuracy on the data it is given (the
    validation split), ties going to the smallest bias, as :func:`kdkit.experiments.hinton.choose_bias`.
    """
    for seed in (0, 1):
        logits, labels, cls = _bias_problem(seed)
        mine = call_answer(my_choose_bias, logits.clone(), labels.clone(), cls, BIAS_GRID)
        if isinstance(mine, Feedback):
            return mine
        try:
            mine = float(mine)
        except (TypeError, ValueError):
            return Feedback(False, f"return one number (the bias), got {type(mine).__name__}")
        reference = choose_bias(logits, labels, cls, BIAS_GRID)
        if abs(mine - reference) < 1e-9:
            continue
        if mine not in BIAS_GRID:
            return Feedback(False, f"{mine:g} is not one of the candidate biases: choose among `biases`.")
        class_scores = [class_accuracy(with_bias(logits, cls, b), labels, cls) for b in BIAS_GRID]
        if class_scores[BIAS_GRID.index(mine)] == max(class_scores) and mine > reference:
            return Feedback(False, f"you chose {mine:g}, which maximises the accuracy on class {cls} alone: "
                                   "a large enough bias makes *every* example a "
                                   f"{cls}. Maximise the accuracy over all classes (the best is {reference:g}).")
        overall = lambda b: float((with_bias(logits, cls, b).argmax(1) == labels).float().mean())  # noqa: E731
        if abs(overall(mine) - overall(reference)) < 1e-12:
            return Feedback(False, f"{mine:g} ties with the best overall accuracy, but ties must go to the "
                                   f"smallest bias ({reference:g}): change the data as little as possible.")
        return Feedback(False, f"you chose {mine:g}; the bias with the best overall accuracy is {reference:g} "
                               f"({100 * overall(reference):.1f}% against {100 * overall(mine):.1f}%).")
    return Feedback(True, "your bias choice matches kdkit's: best overall accuracy, smallest bias on ties.")
