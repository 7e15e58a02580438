"""Response-based distillation: losses on the teacher's (or peers') outputs.

Conventions, the same in every function here (public code bases disagree on each of them):

* ``alpha`` is the weight of the *distillation* term; ``1 - alpha`` weights the
  cross-entropy on hard labels. (torchdistill and Keras use the opposite convention.)
* Every KL divergence is the true per-example KL: summed over classes, averaged over the
  batch (``reduction="batchmean"``). ``nn.KLDivLoss()``'s default ``"mean"`` also divides by
  the number of classes K, which silently rescales alpha by 1/K.
* Softened terms are multiplied by ``T**2`` so that their gradients keep the same size as
  the temperature changes (Hinton et al. 2015, section 2).
* Teacher (and peer) logits are detached: no gradient ever reaches a teacher from here.

Notation: ``z_s``/``z_t`` student/teacher logits of shape (B, K); ``p^T = softmax(z / T)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from kdkit.validation import (check_choice, check_labels, check_logits, check_non_negative,
                              check_positive, check_probabilities, check_same_shape,
                              check_temperature, check_unit_interval)

Tensor = torch.Tensor

__all__ = ["soft_targets", "cross_entropy", "distillation_kl", "kl_to_target", "soft_cross_entropy",
           "kd_loss", "logit_l2_loss", "centred_logit_mse", "label_smoothing_loss",
           "virtual_teacher_probs", "tfkd_reg_loss", "mutual_learning_loss",
           "averaged_soft_targets", "averaged_logits", "confidence_weights", "multi_teacher_kd_loss",
           "TFKD_MODES", "PEER_TARGETS", "PEER_AVERAGES", "TEACHER_COMBINATIONS"]


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------

def soft_targets(logits: Tensor, *, T: float = 1.0) -> Tensor:
    """Softened probabilities ``softmax(z / T)``, shape (B, K). Larger T, flatter output."""
    check_logits("logits", logits)
    T = check_temperature(T)
    return F.softmax(logits / T, dim=1)


def cross_entropy(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy with hard labels: ``mean_b -log p_s[y_b]`` (T = 1)."""
    _check_student_and_labels(student_logits, labels)
    return F.cross_entropy(student_logits, labels)


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, *, T: float) -> Tensor:
    """Hinton's soft term ``T^2 * KL(p_t^T || p_s^T)``, averaged over the batch.

    Computed from log-probabilities on both sides (``log_target=True``) so that it stays
    finite when a softened probability underflows to 0 (small T, logits up to 1e4).
    """
    _check_pair(student_logits, teacher_logits)
    T = check_temperature(T)
    log_p_student = F.log_softmax(student_logits / T, dim=1)           # (B, K)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=1)  # (B, K)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return T * T * _at_least_zero(kl)


def kl_to_target(student_logits: Tensor, target_probs: Tensor, *, T: float = 1.0) -> Tensor:
    """``T^2 * KL(q || p_s^T)`` for a given target distribution ``q`` of shape (B, K).

    Used where the target is not one teacher's softmax: an average of several teachers,
    a hand-made virtual teacher. ``q`` is detached and must be a probability distribution.
    """
    check_logits("student_logits", student_logits)
    check_probabilities("target_probs", target_probs)
    check_same_shape("student_logits", student_logits, "target_probs", target_probs)
    T = check_temperature(T)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    return T * T * _at_least_zero(F.kl_div(log_p_student, target_probs.detach(), reduction="batchmean"))


def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, *, T: float) -> Tensor:
    """``T^2 * mean_b( -sum_k p_t^T log p_s^T )``: cross-entropy with soft targets.

    It differs from :func:`distillation_kl` by ``T^2`` times the teacher's entropy, a
    constant for the student: same gradients, different values. (Some tutorials switch
    between the two and report losses that are not comparable.)
    """
    _check_pair(student_logits, teacher_logits)
    T = check_temperature(T)
    p_teacher = F.softmax(teacher_logits.detach() / T, dim=1)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    return T * T * -(p_teacher * log_p_student).sum(dim=1).mean()


# --------------------------------------------------------------------------------------
# Response-based distillation
# --------------------------------------------------------------------------------------

def kd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
            T: float = 4.0, alpha: float = 0.5) -> Tensor:
    """Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    ``L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(p_t^T || p_s^T)``

    ``alpha`` weights the distillation term (alpha = 0: labels only; alpha = 1: teacher
    only). Both terms are batch means; the KL is summed over classes ("batchmean").

    The value equals ``(1 - alpha) * cross_entropy + alpha * distillation_kl``. Its gradient
    is written out in closed form (:class:`_KDLoss`), which is the paper's equation 2, and
    makes the training step several small autograd operations cheaper: the loss is the
    one every KD run in the workbook trains with.
    """
    _check_pair(student_logits, teacher_logits)
    _check_student_and_labels(student_logits, labels)
    alpha = check_unit_interval("alpha", alpha)
    T = check_temperature(T)
    return _KDLoss.apply(student_logits, teacher_logits.detach(), labels, T, alpha)


class _KDLoss(torch.autograd.Function):
    """Hinton's KD loss with its gradient with respect to the student's logits given directly.

    Per example, ``d/dz_s [CE(z_s, y)] = p_s - onehot(y)`` and (Hinton et al. 2015, eq. 2)
    ``d/dz_s [T^2 KL(p_t^T || p_s^T)] = T (p_s^T - p_t^T)``; both are averaged over the batch.
    The tests check values and gradients against plain autograd on the same formula.
    """

    # Few, fused tensor operations: on a small student each one costs about as much as the
    # arithmetic it does, and this loss runs at every training step.
    @staticmethod
    def forward(ctx, student_logits, teacher_logits, labels, T: float, alpha: float):
        batch = student_logits.shape[0]
        log_p_student = _log_softmax_over_classes(student_logits)       # T = 1, for the CE term
        log_p_student_T = _log_softmax_over_classes(student_logits / T)
        log_p_teacher_T = _log_softmax_over_classes(teacher_logits / T)
        hard = F.nll_loss(log_p_student, labels)                         # batch mean
        kl_sum = F.kl_div(log_p_student_T, log_p_teacher_T, reduction="sum", log_target=True)
        kl_sum = kl_sum.clamp_min(0.0)  # see _at_least_zero; the gradient below is exact anyway
        ctx.save_for_backward(log_p_student, log_p_student_T, log_p_teacher_T, labels)
        ctx.T, ctx.alpha = T, alpha
        return torch.add(hard * (1 - alpha), kl_sum, alpha=alpha * T * T / batch)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        log_p_student, log_p_student_T, log_p_teacher_T, labels = ctx.saved_tensors
        T, alpha = ctx.T, ctx.alpha
        batch = log_p_student.shape[0]
        # (1 - alpha) (p_s - onehot(y)) + alpha T (p_s^T - p_t^T), then / B
        grad = torch.sub(log_p_student_T.exp(), log_p_teacher_T.exp()).mul_(alpha * T)
        grad.add_(log_p_student.exp(), alpha=1 - alpha)
        grad.scatter_add_(1, labels[:, None], torch.full((batch, 1), alpha - 1, dtype=grad.dtype))
        return grad.mul_(grad_output / batch).contiguous(), None, None, None, None


def _at_least_zero(kl: Tensor) -> Tensor:
    """A KL divergence's value clamped at 0, its gradient left as it is.

    A KL is never negative, but in float32 at high T, when student and teacher nearly
    agree, the sum of the terms ``p (log p - log q)`` rounds to small negative values (down
    to -0.04 after the ``T^2`` factor at T = 1000). The clamp fixes the reported value; the
    gradient, which rounding does not bias, passes through unchanged.
    """
    return kl + (kl.clamp_min(0.0) - kl).detach()


def _log_softmax_over_classes(logits: Tensor) -> Tensor:
    """``log_softmax(logits, dim=1)``, the same numbers, computed in the faster layout.

    PyTorch's CPU kernel is slow along a short last dimension: for 128 examples and 10
    classes it took ~15 us here, against ~4 us on the transposed view (and ~2.5 us for
    16 classes). Below 16 classes the transposed view is used.
    """
    if logits.shape[1] < 16:
        return F.log_softmax(logits.t(), dim=0).t()
    return F.log_softmax(logits, dim=1)


def logit_l2_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Ba & Caruana (2014), "Do Deep Nets Really Need to be Deep?": mimic the logits.

    ``L = 1/2 * mean_b || z_s - z_t ||^2``: squared error on the logits, summed over
    classes and averaged over the batch. Labels are not used, so the transfer set can be
    unlabeled. Regressing logits keeps the teacher's information about relative class
    scores that a softmax squashes towards 0 or 1.
    """
    _check_pair(student_logits, teacher_logits)
    diff = student_logits - teacher_logits.detach()  # (B, K)
    return 0.5 * diff.pow(2).sum(dim=1).mean()


def centred_logit_mse(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """The large-temperature limit of :func:`distillation_kl` (Hinton et al. 2015, 2.1).

    ``L = 1/(2K) * mean_b || (z_s - mean z_s) - (z_t - mean z_t) ||^2``. As T grows,
    ``T^2 * KL(p_t^T || p_s^T)`` approaches this value and its gradient approaches
    ``(z_s - z_t) / K`` for zero-mean logits: distillation becomes logit matching.
    """
    _check_pair(student_logits, teacher_logits)
    centre = lambda z: z - z.mean(dim=1, keepdim=True)  # noqa: E731 - one-line helper
    diff = centre(student_logits) - centre(teacher_logits.detach())  # (B, K)
    return 0.5 * diff.pow(2).mean(dim=1).mean()


def label_smoothing_loss(student_logits: Tensor, labels: Tensor, *, smoothing: float) -> Tensor:
    """Cross-entropy against smoothed labels ``q = (1 - eps) * onehot(y) + eps / K``.

    ``L = (1 - eps) * CE(z_s, y) + eps * mean_b( -1/K sum_k log p_s,k )``. It is KD with a
    uniform teacher at T = 1 and ``alpha = eps`` (up to the constant ``eps * log K``):
    Yuan et al. (2020) read KD as a learned label smoothing.
    """
    _check_student_and_labels(student_logits, labels)
    eps = check_unit_interval("smoothing", smoothing)
    log_p = F.log_softmax(student_logits, dim=1)                      # (B, K)
    hard = -log_p.gather(1, labels[:, None]).squeeze(1).mean()
    uniform = -log_p.mean(dim=1).mean()
    return (1 - eps) * hard + eps * uniform


TFKD_MODES = ("paper", "code")


def virtual_teacher_probs(labels: Tensor, num_classes: int, *, correct_prob: float,
                          T: float) -> Tensor:
    """Yuan et al. (2020) Tf-KD_reg's hand-made teacher, shape (B, K).

    ``p_d(k) = a if k == y else (1 - a) / (K - 1)``, then softened as if it were logits:
    ``softmax(p_d / T)``. Because p_d lies in [0, 1], any T well above 1 makes the result
    nearly uniform: with a = 0.99, T = 20 and K = 100 the correct class gets about 1.05%.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise ValueError("labels must be a 1-D tensor of class indices")
    check_labels("labels", labels, batch=labels.shape[0], num_classes=num_classes)
    a = check_unit_interval("correct_prob", correct_prob)
    T = check_temperature(T)
    p_d = torch.full((labels.shape[0], num_classes), (1 - a) / (num_classes - 1))
    p_d[torch.arange(labels.shape[0]), labels] = a
    return F.softmax(p_d / T, dim=1)


def tfkd_reg_loss(student_logits: Tensor, labels: Tensor, *, T: float = 20.0,
                  alpha: float = 0.5, correct_prob: float = 0.9, mode: str = "paper",
                  multiplier: float = 1.0) -> Tensor:
    """Yuan et al. (2020) Tf-KD_reg: distillation from a virtual teacher, no teacher net.

    ``mode="paper"`` (the paper's Eq. 9, both sides softened, with Hinton's T^2):
        ``L = (1 - alpha) CE + alpha * T^2 * KL(softmax(p_d/T) || softmax(z_s/T))``, batchmean.
        The paper writes Eq. 9 (like its KD loss, Eq. 4) without the T^2; kdkit adds it so
        that alpha keeps its meaning as T changes (the soft gradient otherwise shrinks like
        1/T^2). At T = 1 the two are the same loss.
    ``mode="code"`` (the official implementation):
        ``L = (1 - alpha) CE + alpha * multiplier * KL(softmax(p_d/T) || softmax(z_s))``
        with the student *not* softened, no T^2, and ``nn.KLDivLoss()``'s "mean" reduction
        (divides by B*K). The official code fixes correct_prob = 0.99 and tunes a
        per-model ``multiplier`` (up to 100) to make up for the 1/K.
    """
    _check_student_and_labels(student_logits, labels)
    check_choice("mode", mode, TFKD_MODES)
    alpha = check_unit_interval("alpha", alpha)
    multiplier = check_positive("multiplier", multiplier)
    target = virtual_teacher_probs(labels, student_logits.shape[1], correct_prob=correct_prob, T=T)
    target = target.to(student_logits.dtype)
    hard = F.cross_entropy(student_logits, labels)
    if mode == "paper":
        soft = kl_to_target(student_logits, target, T=T)
    else:
        log_p_student = F.log_softmax(student_logits, dim=1)
        # nn.KLDivLoss()'s default "mean": the summed KL divided by B*K (not by B).
        soft = multiplier * F.kl_div(log_p_student, target, reduction="sum") / target.numel()
    return (1 - alpha) * hard + alpha * soft


PEER_TARGETS = ("pairwise", "ensemble", "ensemble_logits")
PEER_AVERAGES = ("mean", "sum")


def mutual_learning_loss(student_logits: Tensor, peer_logits: Sequence[Tensor], labels: Tensor,
                         *, T: float = 1.0, target: str = "pairwise", weight: float = 1.0,
                         peer_average: str = "mean") -> Tensor:
    """Zhang et al. (2018), Deep Mutual Learning: the loss of one peer in a cohort.

    ``target="pairwise"`` (DML): ``L_k = CE(z_k, y) + w/(n-1) sum_{l != k} T^2 KL(p_l^T || p_k^T)``.
    ``target="ensemble"``: ``L_k = CE(z_k, y) + w T^2 KL(mean_{l != k} p_l^T || p_k^T)``, the
    other peers' *probabilities* averaged. It has exactly the gradient of "pairwise": the two
    losses differ by the peers' generalised Jensen-Shannon divergence, a constant for peer k.
    ``target="ensemble_logits"``: ``... KL(softmax(mean_{l != k} z_l / T) || p_k^T)``, the
    other peers' *logits* averaged, a sharper target: a genuinely different method.

    ``peer_logits`` are the *other* peers' logits; they are detached. The paper uses T = 1
    and weights the two terms equally (``weight`` = 1, no alpha). ``peer_average="sum"`` drops
    the paper's 1/(n-1), as the official TensorFlow code does (equal for two peers).
    """
    _check_student_and_labels(student_logits, labels)
    check_choice("target", target, PEER_TARGETS)
    check_choice("peer_average", peer_average, PEER_AVERAGES)
    weight = check_non_negative("weight", weight)
    if len(peer_logits) == 0:
        raise ValueError("peer_logits must hold the logits of at least one other peer")
    for j, z in enumerate(peer_logits):
        check_logits(f"peer_logits[{j}]", z)
        check_same_shape("student_logits", student_logits, f"peer_logits[{j}]", z)
    hard = F.cross_entropy(student_logits, labels)
    if target == "pairwise":
        mimicry = sum(distillation_kl(student_logits, z, T=T) for z in peer_logits) / len(peer_logits)
    elif target == "ensemble":
        mimicry = kl_to_target(student_logits, averaged_soft_targets(peer_logits, T=T), T=T)
    else:
        mean_logits = torch.stack([z.detach() for z in peer_logits]).mean(dim=0)
        mimicry = distillation_kl(student_logits, mean_logits, T=T)
    if peer_average == "sum":
        mimicry = mimicry * len(peer_logits)
    return hard + weight * mimicry


TEACHER_COMBINATIONS = ("probabilities", "logits")


def averaged_soft_targets(teacher_logits: Sequence[Tensor], *, T: float = 1.0,
                          weights: Sequence[float] | Tensor | None = None) -> Tensor:
    """Weighted average of several teachers' softened outputs, ``sum_j mu_j p_j^T / sum_j mu_j``.

    The multi-teacher soft target (e.g. Wu et al. 2019); uniform weights when ``weights`` is
    None. ``weights`` holds one number per teacher (J,), or one per teacher and example (J, B)
    (e.g. :func:`confidence_weights`); they are normalised over the teachers. Detached: the
    result is a fixed target.
    """
    _check_teachers(teacher_logits)
    mu = _check_weights(weights, len(teacher_logits), batch=teacher_logits[0].shape[0])
    T = check_temperature(T)
    probs = torch.stack([F.softmax(z.detach() / T, dim=1) for z in teacher_logits])  # (J, B, K)
    mu = _per_example(mu.to(probs.dtype), probs.shape[1])                              # (J, B)
    return (mu[:, :, None] * probs).sum(dim=0) / mu.sum(dim=0)[:, None]


def averaged_logits(teacher_logits: Sequence[Tensor], *,
                    weights: Sequence[float] | Tensor | None = None) -> Tensor:
    """Weighted average of several teachers' *logits*, ``sum_j mu_j z_j / sum_j mu_j`` (detached).

    Softened, it is a normalised *geometric* mean of the teachers' probabilities: a class
    keeps mass only where every teacher gives it some, while the average of probabilities
    (:func:`averaged_soft_targets`) keeps every teacher's opinion.
    """
    _check_teachers(teacher_logits)
    mu = _check_weights(weights, len(teacher_logits), batch=teacher_logits[0].shape[0])
    logits = torch.stack([z.detach() for z in teacher_logits])                          # (J, B, K)
    mu = _per_example(mu.to(logits.dtype), logits.shape[1])
    return (mu[:, :, None] * logits).sum(dim=0) / mu.sum(dim=0)[:, None]


def confidence_weights(teacher_logits: Sequence[Tensor], labels: Tensor) -> Tensor:
    """Per-example teacher weights: each teacher's probability of the true class, (J, B).

    A teacher counts on an example in proportion to how sure it is of the right answer there,
    so a teacher that is wrong on an example hardly counts on it. This is kdkit's simple form of
    the idea; confidence-aware multi-teacher KD (CA-MKD, Zhang, Chen & Wang, ICASSP 2022) also
    weights each teacher per example by its cross-entropy against the label, with a formula of
    its own. The labels must be known. Weights are at least ``CONFIDENCE_FLOOR``, so that an
    example on which every teacher is confidently wrong gets equal weights, not a division by 0.
    """
    _check_teachers(teacher_logits)
    check_labels("labels", labels, batch=teacher_logits[0].shape[0], num_classes=teacher_logits[0].shape[1])
    probs = torch.stack([F.softmax(z.detach(), dim=1) for z in teacher_logits])         # (J, B, K)
    right = probs.gather(2, labels[None, :, None].expand(len(teacher_logits), -1, 1)).squeeze(2)
    return right.clamp_min(CONFIDENCE_FLOOR)


CONFIDENCE_FLOOR = 1e-12


def multi_teacher_kd_loss(student_logits: Tensor, teacher_logits: Sequence[Tensor], labels: Tensor,
                          *, T: float = 4.0, alpha: float = 0.5,
                          weights: Sequence[float] | Tensor | None = None,
                          combine: str = "probabilities") -> Tensor:
    """KD from several teachers through one combined target.

    ``L = (1 - alpha) CE(z_s, y) + alpha * T^2 * KL(q || p_s^T)``. ``combine`` "probabilities":
    ``q`` the weighted average of the teachers' softened outputs (:func:`averaged_soft_targets`;
    the same gradient as the weighted average of one KD loss per teacher); "logits": ``q`` the
    softened weighted average of their logits (:func:`averaged_logits`, a different target).
    With one teacher both equal :func:`kd_loss`.
    """
    _check_student_and_labels(student_logits, labels)
    alpha = check_unit_interval("alpha", alpha)
    check_choice("combine", combine, TEACHER_COMBINATIONS)
    if combine == "probabilities":
        target = averaged_soft_targets(teacher_logits, T=T, weights=weights)
    else:
        target = soft_targets(averaged_logits(teacher_logits, weights=weights), T=check_temperature(T))
    check_same_shape("student_logits", student_logits, "teacher logits", target)
    hard = F.cross_entropy(student_logits, labels)
    return (1 - alpha) * hard + alpha * kl_to_target(student_logits, target, T=T)


# --------------------------------------------------------------------------------------
# Input checks (the messages name the argument; see kdkit.validation)
# --------------------------------------------------------------------------------------

def _check_pair(student_logits: Tensor, teacher_logits: Tensor) -> None:
    check_logits("student_logits", student_logits)
    check_logits("teacher_logits", teacher_logits)
    check_same_shape("student_logits", student_logits, "teacher_logits", teacher_logits)


def _check_student_and_labels(student_logits: Tensor, labels: Tensor) -> None:
    check_logits("student_logits", student_logits)
    check_labels("labels", labels, batch=student_logits.shape[0],
                 num_classes=student_logits.shape[1])


def _check_teachers(teacher_logits: Sequence[Tensor]) -> None:
    if len(teacher_logits) == 0:
        raise ValueError("teacher_logits must hold at least one teacher's logits")
    for j, z in enumerate(teacher_logits):
        check_logits(f"teacher_logits[{j}]", z)
        check_same_shape("teacher_logits[0]", teacher_logits[0], f"teacher_logits[{j}]", z)


def _check_weights(weights, count: int, *, batch: int | None = None) -> Tensor:
    """Teacher weights: (count,), or (count, batch) per example; finite, >= 0, and not all
    zero for any example."""
    if weights is None:
        return torch.ones(count)
    mu = torch.as_tensor(weights.detach() if isinstance(weights, Tensor) else weights, dtype=torch.float64)
    shapes = [(count,)] + ([(count, batch)] if batch is not None else [])
    if tuple(mu.shape) not in shapes or not bool(torch.isfinite(mu).all()) or bool((mu < 0).any()) \
            or bool((mu.sum(dim=0) <= 0).any()):
        shown = list(weights) if mu.dim() == 1 else f"a tensor of shape {tuple(mu.shape)}"
        raise ValueError(f"weights must be {count} finite numbers >= 0, not all zero (one per teacher"
                         f"{', or one per teacher and example' if batch is not None else ''}), got {shown}")
    return mu


def _per_example(mu: Tensor, batch: int) -> Tensor:
    """Teacher weights as (J, B): a weight per teacher is the same for every example."""
    return mu[:, None].expand(-1, batch) if mu.dim() == 1 else mu
