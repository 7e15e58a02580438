"""Exercises of notebook 01 (Ba & Caruana 2014), each with a checker that names the mistake.

* :func:`check_logit_l2_loss` - write the mimic loss ``1/2 mean_b ||z_s - z_t||^2``.
* :func:`check_parameter_count` - count the parameters of the shallow net with a linear
  bottleneck, ``W = U V``.

A checker returns a :class:`Feedback`: ``print(feedback)`` shows the message, and
``bool(feedback)`` says whether the answer is right.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from kdkit import losses
from kdkit.exercises.feedback import Feedback
from kdkit.models import count_parameters, shallow_mlp


def _random_logits(batch: int = 16, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z_s = torch.randn(batch, classes, generator=generator)
    z_t = 4 * torch.randn(batch, classes, generator=generator)
    return z_s, z_t


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-6))


def check_logit_l2_loss(candidate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Feedback:
    """Check ``candidate(z_s, z_t)`` against :func:`kdkit.losses.logit_l2_loss`.

    Tried on random logits (several batch sizes); the value, the gradient with respect to
    the student's logits, and that no gradient reaches the teacher's logits.
    """
    z_s, z_t = _random_logits()
    z_s.requires_grad_(True)
    z_t_leaf = z_t.clone().requires_grad_(True)
    try:
        value = candidate(z_s, z_t_leaf)
    except Exception as error:  # any failure is reported, never raised at the learner
        return Feedback(False, f"Not yet: your function raised {error.__class__.__name__}: {error}")
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        return Feedback(False, f"Not yet: the loss must be one number (a 0-d tensor), got {shape}. "
                               "Sum over the classes, then average over the batch.")
    expected = losses.logit_l2_loss(z_s.detach(), z_t)
    got = value.detach()
    diagnosis = _diagnose_value(got, z_s.detach(), z_t, expected)
    if diagnosis:
        return Feedback(False, "Not yet: " + diagnosis)
    no_gradient = Feedback(False, "Not yet: the value is right but no gradient reaches the student's "
                                  "logits. Did you call .detach() or .item() on z_s?")
    if not value.requires_grad:
        return no_gradient
    grad_s, = torch.autograd.grad(value, z_s, retain_graph=True, allow_unused=True)
    if grad_s is None:
        return no_gradient
    if not _close(grad_s, (z_s.detach() - z_t) / z_s.shape[0]):
        return Feedback(False, "Not yet: the value is right but the gradient is not (z_s - z_t) / B.")
    if value.grad_fn is not None:
        grad_t, = torch.autograd.grad(value, z_t_leaf, allow_unused=True)
        if grad_t is not None and bool(grad_t.abs().sum() > 0):
            return Feedback(False, "Almost: the value is right, but a gradient flows into the teacher's "
                                   "logits. Detach them: z_t.detach() (the teacher is frozen).")
    for batch in (1, 7):  # a different batch size catches a hard-coded B
        a, b = _random_logits(batch=batch, seed=batch)
        if not _close(candidate(a, b).detach(), losses.logit_l2_loss(a, b)):
            return Feedback(False, f"Not yet: right for a batch of 16 but wrong for a batch of {batch}. "
                                   "Is the batch size hard-coded?")
    return Feedback(True, "Correct: 1/2 * mean over the batch of the squared error summed over the classes, "
                          "the teacher detached. Same value and gradient as kdkit.losses.logit_l2_loss.")


def _diagnose_value(got, z_s, z_t, expected) -> str:
    """Name the likely mistake from the value alone ("" when the value is right)."""
    batch, classes = z_s.shape
    if _close(got, expected):
        return ""
    squared = (z_s - z_t).pow(2)                                        # (B, K)
    p_s, p_t = F.softmax(z_s, dim=1), F.softmax(z_t, dim=1)
    known = [
        (2 * expected, "your value is twice the reference: the factor 1/2 is missing."),
        (expected / classes, "you averaged over the classes as well (F.mse_loss's default): "
                             "sum over the classes, average over the batch only."),
        (2 * expected / classes, "this is F.mse_loss(z_s, z_t): it averages over the classes and has "
                                 "no 1/2. Sum over the classes, average over the batch, times 1/2."),
        (expected * batch, "you summed over the batch: average over it instead."),
        (0.5 * squared.sum(dim=1).sqrt().mean(), "you took the norm, not the squared norm."),
        (0.5 * (p_s - p_t).pow(2).sum(dim=1).mean(),
         "you regressed the probabilities softmax(z). Ba & Caruana regress the logits themselves: "
         "the softmax squashes the information the student should copy."),
        (F.mse_loss(p_s, p_t), "you regressed the probabilities (with F.mse_loss). Regress the logits."),
        (0.5 * (z_s - z_t).sum(dim=1).pow(2).mean(),
         "you squared the summed difference: square each class's difference, then sum."),
    ]
    for value, message in known:
        if _close(got, value):
            return message
    return (f"for the test logits the reference gives {float(expected):.4f}, yours {float(got):.4f}. "
            "Compute 0.5 * ((z_s - z_t) ** 2).sum(dim=1).mean().")


def check_parameter_count(candidate: Callable[[int, int, int, int], int]) -> Feedback:
    """Check ``candidate(input_dim, width, bottleneck, num_classes)`` against the real model.

    ``bottleneck = 0`` means no bottleneck. The reference counts the parameters of
    :func:`kdkit.models.shallow_mlp`, whose bottleneck layer ``V`` is linear and has no bias.
    """
    cases = [(40, 512, 0, 10), (40, 512, 16, 10), (100, 64, 8, 5), (1845, 2000, 250, 183)]
    for d, h, k, c in cases:
        model = shallow_mlp((d,), c, width=h, bottleneck=k or None)
        expected = count_parameters(model)
        try:
            got = candidate(d, h, k, c)
        except Exception as error:
            return Feedback(False, f"Not yet: your function raised {error.__class__.__name__}: {error}")
        if got == expected:
            continue
        first_in = k if k else d
        hints = [
            (expected - h - c, "the biases are missing: the hidden layer has `width` of them and the "
                               "output layer `num_classes`."),
            (expected - h, "the hidden layer's biases (one per hidden unit) are missing."),
            (expected - c, "the output layer's biases (one per class) are missing."),
            (expected + k, "the bottleneck V = a linear map with no bias in this model: drop its k biases."),
            (expected - k * d, "the bottleneck's own weights V (input_dim * k) are missing."),
            (d * h + h + h * c + c, "with a bottleneck the first layer is not input_dim x width any more: "
                                    "it is V (input_dim x k) followed by U (k x width)."),
            (expected + (d - first_in) * h if k else None, "with a bottleneck U maps k (not input_dim) inputs "
                                                          "to the hidden layer."),
        ]
        for value, message in hints:
            if value is not None and got == value:
                return Feedback(False, f"Not yet (input {d}, width {h}, k {k}, {c} classes: expected "
                                       f"{expected:,}, got {got:,}): {message}")
        return Feedback(False, f"Not yet: for input {d}, width {h}, bottleneck {k}, {c} classes the model "
                               f"has {expected:,} parameters, you said {got!r}.")
    return Feedback(True, "Correct: k*d (V, no bias) + (k or d)*H + H (U and its biases) + H*K + K "
                          "(output layer). For TIMIT-sized inputs the bottleneck saves most of W.")
