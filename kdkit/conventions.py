"""The same Hinton KD loss as well-known code bases compute it, to show why their numbers differ.

Every library below trains a student on labels and a teacher's softened outputs, and most call
one knob ``alpha``; but what ``alpha`` weights, how the KL divergence is reduced, whether the soft
term is scaled by ``T^2``, and even whether the soft term is a KL at all, differ. :func:`kd_loss_as_in`
computes one batch's loss under each convention from the same logits and the same ``alpha``;
:func:`conventions_table` lays them side by side.

Read in the sources (commit in :data:`CONVENTIONS`):

* **kdkit**: ``(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)``, KL summed over classes and averaged
  over the batch ("batchmean"). The attention-transfer code, RepDistiller and mdistiller compute the
  same soft term (``kl_div(..., sum) * T**2 / B``), with their own weights.
* **torchdistill** ``KDLoss``: ``alpha CE + (1 - alpha) T^2 KL`` (``beta = 1 - alpha``): alpha weights the
  *labels*; with ``alpha`` 0 (or None, or no labels) it returns the plain KL, without ``T^2``.
* **Keras example** (``keras-io``, ``knowledge_distillation.py``): ``alpha`` weights the student's hard
  loss too, ``(1 - alpha) T^2 KL``; its first version had no ``T^2``.
* **KD-Lib** ``VanillaKD``: ``(1 - w) CE + w T^2 MSE(p_t^T, p_s^T)``: ``distil_weight`` ``w`` weights the
  soft term, which by default is the mean squared error between the two *probability* vectors
  (``nn.MSELoss()``: mean over examples and classes), not a KL.
* **nn.KLDivLoss()**, PyTorch's default ``reduction="mean"``, as in many blog posts: the KL averaged
  over examples *and classes*, i.e. divided by ``K`` (the attention-transfer code did the same, with an
  extra factor 2, until its commit 4133ac5 "fix KL" in 2018).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdkit.losses import cross_entropy, distillation_kl, kd_loss, soft_targets
from kdkit.validation import check_choice, check_temperature, check_unit_interval

Tensor = torch.Tensor


@dataclass(frozen=True)
class Convention:
    """How one code base writes the KD loss."""
    alpha_weights: str          # "distillation" or "labels": the term the knob called alpha multiplies
    soft_term: str              # "KL, batchmean", "KL, mean over classes too", "MSE of probabilities"
    t_squared: str              # whether the soft term is multiplied by T^2
    source: str                 # where it was read


CONVENTIONS = {
    "kdkit": Convention("distillation", "KL, batchmean", "yes", "kdkit.losses.kd_loss"),
    "RepDistiller, attention-transfer, mdistiller": Convention(
        "distillation", "KL, batchmean", "yes",
        "HobbitLong/RepDistiller@b84f547 distiller_zoo/KD.py (alpha = -a, CE weight -r gamma: 0.1/0.9 in its "
        "recipe); szagoruyko/attention-transfer@893df54 utils.py; megvii-research/mdistiller@a08d46f (CE 0.1, KD 0.9)"),
    "torchdistill": Convention("labels", "KL, batchmean", "yes, unless alpha is 0",
                               "yoshitomo-matsubara/torchdistill v1.1.4 losses/mid_level.py KDLoss"),
    "Keras example": Convention("labels", "KL, batchmean", "yes (not in its first version)",
                                "keras-team/keras-io examples/vision/knowledge_distillation.py"),
    "KD-Lib": Convention("distillation", "MSE of probabilities", "yes",
                         "SforAiDl/KD_Lib@a94d236 KD/vision/vanilla/vanilla_kd.py (distil_weight, loss_fn=nn.MSELoss())"),
    "nn.KLDivLoss() default": Convention("distillation", "KL, mean over classes too", "yes",
                                         "torch.nn.KLDivLoss(), whose reduction='mean' also divides by the number of classes"),
}
"""Each convention, by the code bases that follow it."""
KDKIT_FORM = ("kdkit", "RepDistiller, attention-transfer, mdistiller")
"""The conventions that compute kdkit's loss (RepDistiller with its CE weight ``gamma = 1 - alpha``, as in
its recipe ``-r 0.1 -a 0.9``)."""


def kd_loss_as_in(convention: str, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *,
                  T: float, alpha: float) -> Tensor:
    """One batch's KD loss as ``convention`` (a key of :data:`CONVENTIONS`) computes it, with ``alpha``
    passed to the knob that code calls alpha (KD-Lib: ``distil_weight``)."""
    check_choice("convention", convention, CONVENTIONS)
    T, alpha = check_temperature(T), check_unit_interval("alpha", alpha)
    if convention in KDKIT_FORM:
        return kd_loss(student_logits, teacher_logits, labels, T=T, alpha=alpha)
    hard = cross_entropy(student_logits, labels)
    soft = distillation_kl(student_logits, teacher_logits, T=T)          # T^2 KL, batchmean
    if convention == "torchdistill" and alpha == 0:
        return soft / (T * T)                                         # its early return: no T^2, no labels
    if convention in ("torchdistill", "Keras example"):
        return alpha * hard + (1 - alpha) * soft
    if convention == "KD-Lib":
        mse = F.mse_loss(soft_targets(student_logits, T=T), soft_targets(teacher_logits.detach(), T=T))
        return (1 - alpha) * hard + alpha * T * T * mse               # nn.MSELoss(): mean over B x K
    return (1 - alpha) * hard + alpha * soft / student_logits.shape[1]  # nn.KLDivLoss(): mean over B x K


def conventions_table(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, *, T: float,
                      alpha: float) -> str:
    """Every convention's loss for the same batch and the same ``alpha``, with what differs."""
    rows = [f"{'code base':<46}{'alpha weights':>15}{'soft term':>28}{'T^2':>33}{'loss':>10}"]
    for name, convention in CONVENTIONS.items():
        value = float(kd_loss_as_in(name, student_logits, teacher_logits, labels, T=T, alpha=alpha).detach())
        rows.append(f"{name:<46}{convention.alpha_weights:>15}{convention.soft_term:>28}"
                    f"{convention.t_squared:>33}{value:>10.4f}")
    return "\n".join(rows)
