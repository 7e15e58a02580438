"""Training objectives: a loss from :mod:`kdkit.losses` bound to the fields of a batch.

:func:`kdkit.train.fit` calls ``objective(logits, batch)`` once per mini-batch, where
``batch`` has ``x``, ``y`` and ``teacher_logits`` (the teacher's cached outputs for the same
examples). An objective says which of those its loss needs and fixes the hyper-parameters,
so one training loop serves every method. Each objective has a readable ``repr``; the
experiment panels and checkpoints use it as part of a run's configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from kdkit import losses
from kdkit.validation import check_positive, check_unit_interval, lookup

Tensor = torch.Tensor


class Batch(NamedTuple):
    """One mini-batch: inputs, labels (``-1`` where unknown) and cached teacher logits."""
    x: Tensor
    y: Tensor
    teacher_logits: Tensor | None


def _teacher_logits(batch: Batch, objective) -> Tensor:
    if batch.teacher_logits is None:
        raise ValueError(f"{objective!r} needs teacher logits: cache them first with "
                         "kdkit.train.with_teacher_logits(teacher, data)")
    return batch.teacher_logits


@dataclass(frozen=True)
class CrossEntropy:
    """Plain supervised training on hard labels: the baseline every method is compared to."""

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.cross_entropy(logits, batch.y)


@dataclass(frozen=True)
class Distillation:
    """Hinton KD: ``(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)`` (see losses.kd_loss)."""
    T: float = 4.0
    alpha: float = 0.5

    def __post_init__(self):
        check_positive("temperature T", self.T)
        check_unit_interval("alpha", self.alpha)

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.kd_loss(logits, _teacher_logits(batch, self), batch.y, T=self.T, alpha=self.alpha)


@dataclass(frozen=True)
class LogitMimic:
    """Ba & Caruana: L2 regression on the teacher's logits; labels are never read."""

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.logit_l2_loss(logits, _teacher_logits(batch, self))


@dataclass(frozen=True)
class SoftTargets:
    """Cross-entropy on the teacher's softened probabilities only; labels are never read."""
    T: float = 1.0

    def __post_init__(self):
        check_positive("temperature T", self.T)

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.soft_cross_entropy(logits, _teacher_logits(batch, self), T=self.T)


@dataclass(frozen=True)
class LabelSmoothing:
    """Cross-entropy on labels smoothed by mass ``smoothing`` spread uniformly."""
    smoothing: float = 0.1

    def __post_init__(self):
        check_unit_interval("smoothing", self.smoothing)

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.label_smoothing_loss(logits, batch.y, smoothing=self.smoothing)


@dataclass(frozen=True)
class VirtualTeacher:
    """Tf-KD_reg: KD from a hand-made teacher (see losses.tfkd_reg_loss for both modes)."""
    T: float = 20.0
    alpha: float = 0.5
    correct_prob: float = 0.9
    mode: str = "paper"
    multiplier: float = 1.0

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        return losses.tfkd_reg_loss(logits, batch.y, T=self.T, alpha=self.alpha,
                                    correct_prob=self.correct_prob, mode=self.mode,
                                    multiplier=self.multiplier)


OBJECTIVES = {"labels": CrossEntropy, "kd": Distillation, "mimic": LogitMimic,
              "soft_targets": SoftTargets, "label_smoothing": LabelSmoothing,
              "virtual_teacher": VirtualTeacher}


def make_objective(name: str, **hyper_parameters):
    """An objective by name, e.g. ``make_objective("kd", T=4, alpha=0.5)``."""
    return lookup("objective", name, OBJECTIVES)(**hyper_parameters)
