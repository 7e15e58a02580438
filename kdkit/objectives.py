"""Training objectives: how one method turns a mini-batch into a loss.

There are two kinds, and :func:`kdkit.train.fit` runs both:

* A **logit objective** is a loss on the model's logits: ``objective(logits, batch) -> loss``.
  ``fit`` runs the model, calls it, and updates. Every response-based method of a single
  student is one (labels, Hinton KD, logit mimicry, label smoothing, Tf-KD); they are frozen
  dataclasses below, and this path is kept as lean as a hand-written loop.
* A **training step** owns the whole step: ``method.step(model, batch, update) -> StepOutput``.
  It runs the model(s) itself (a cohort of peers, a multi-exit network, a student whose
  features it needs), returns the loss, the logits train accuracy is measured on and any
  extra metrics, and may own trainable parts (a FitNets regressor, a self-distilling
  network's adaptors): a training step that is an ``nn.Module`` has its parameters trained
  with the model's.
  ``update(loss)`` is the optimiser step (zero_grad, backward, step); a method that must
  update several times per batch (Deep Mutual Learning's Algorithm 1) calls it itself and
  returns ``updated=True``; otherwise ``fit`` calls it on the returned loss.

``batch`` has ``x``, ``y``, ``teacher_logits`` (the teacher's cached outputs for the same
examples) and ``extras`` (more cached per-example tensors: each teacher's logits, teacher
features). Each objective has a readable ``repr``; the experiment panels and checkpoints
use it as part of a run's configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

import torch
from torch import nn

from kdkit import losses
from kdkit.models import pool_to_vector
from kdkit.validation import (check_choice, check_non_negative, check_positive, check_temperature,
                              check_unit_interval, lookup)

Tensor = torch.Tensor

NO_EXTRAS: Mapping[str, Tensor] = MappingProxyType({})


class Batch(NamedTuple):
    """One mini-batch: inputs, labels (``-1`` where unknown), cached teacher outputs, and
    ``step``, the index of this update step in the run (0, 1, ...), for methods that take
    turns (Deep Mutual Learning's alternating order)."""
    x: Tensor
    y: Tensor
    teacher_logits: Tensor | None
    extras: Mapping[str, Tensor] = NO_EXTRAS
    step: int = 0


class StepOutput(NamedTuple):
    """What a training step returns to the loop.

    ``loss``: the scalar trained on (for a method that updated itself, the one to report).
    ``logits``: what train accuracy is measured on: one (B, K) tensor, or a dict of them
    (one per peer or exit; the metrics are then kept per output).
    ``metrics``: extra per-step scalars (each loss term, ...), averaged over the epoch
    into the History as ``train_<name>``.
    ``updated``: True when the step already called ``update`` itself.
    """
    loss: Tensor
    logits: Tensor | Mapping[str, Tensor]
    metrics: Mapping[str, Tensor] = NO_EXTRAS
    updated: bool = False


Update = Callable[[Tensor], None]


def is_training_step(objective) -> bool:
    """True for a method that owns its step (has ``step``), False for a logit objective."""
    return callable(getattr(objective, "step", None))


def _teacher_logits(batch: Batch, objective) -> Tensor:
    if batch.teacher_logits is None:
        raise ValueError(f"{objective!r} needs teacher logits: cache them first with "
                         "kdkit.train.with_teacher_logits(teacher, data)")
    return batch.teacher_logits


def _extra(batch: Batch, name: str, objective) -> Tensor:
    if name not in batch.extras:
        raise ValueError(f"{objective!r} needs the cached tensor {name!r}, but the batch holds "
                         f"{sorted(batch.extras) or 'none'}; cache it first with "
                         "kdkit.train.with_teacher_outputs(teachers, data)")
    return batch.extras[name]


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
        check_temperature(self.T)
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
        check_temperature(self.T)

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


@dataclass(frozen=True)
class MultiTeacher:
    """KD from several teachers' cached logits through one combined target.

    Reads ``batch.extras[f"{name}.logits"]`` for every name in ``teachers`` (cache them with
    :func:`kdkit.train.with_teacher_outputs`). ``weights``: one number per teacher, None for
    uniform, or ``"confidence"``: per example, each teacher's probability of the true class
    (:func:`kdkit.losses.confidence_weights`). ``combine``: average the softened probabilities
    or the logits (see :func:`kdkit.losses.multi_teacher_kd_loss`).
    """
    teachers: tuple[str, ...]
    T: float = 4.0
    alpha: float = 0.5
    weights: tuple[float, ...] | str | None = None
    combine: str = "probabilities"

    def __post_init__(self):
        if len(self.teachers) == 0:
            raise ValueError("teachers must name at least one cached teacher")
        check_temperature(self.T)
        check_unit_interval("alpha", self.alpha)
        check_choice("combine", self.combine, losses.TEACHER_COMBINATIONS)
        if isinstance(self.weights, str):
            check_choice("weights", self.weights, ("confidence",))
        elif self.weights is not None and len(self.weights) != len(self.teachers):
            raise ValueError(f"weights must hold one number per teacher ({len(self.teachers)}), "
                             f"got {list(self.weights)}")

    def __call__(self, logits: Tensor, batch: Batch) -> Tensor:
        teacher_logits = [_extra(batch, f"{name}.logits", self) for name in self.teachers]
        weights = (losses.confidence_weights(teacher_logits, batch.y) if self.weights == "confidence"
                   else self.weights)
        return losses.multi_teacher_kd_loss(logits, teacher_logits, batch.y, T=self.T, alpha=self.alpha,
                                            weights=weights, combine=self.combine)


UPDATE_ORDERS = ("simultaneous", "sequential", "alternating")


@dataclass(frozen=True)
class MutualLearning:
    """Deep Mutual Learning (Zhang et al. 2018): a cohort of peers that teach each other.

    The model is a :class:`kdkit.models.Cohort`. Each peer k trains on
    ``CE(z_k, y) + weight/(n-1) sum_{l != k} T^2 KL(p_l^T || p_k^T)`` with the other peers'
    predictions detached (:func:`kdkit.losses.mutual_learning_loss`: ``target`` "pairwise"
    for DML, "ensemble" / "ensemble_logits" for a target made of the other peers averaged;
    ``peer_average`` "sum" for the official code's plain sum over peers).

    ``order`` is when the peers move:

    * ``"simultaneous"``: every peer's loss is computed from the same forward pass, then one
      update moves all peers at once (the cheapest; a peer sees the others as they were).
    * ``"sequential"``: the paper's Algorithm 1. Peer 1 is updated first; the cohort is run
      again and peer 2 learns from the *updated* peer 1, and so on, all on the same batch.
      That is one forward pass of the whole cohort per peer and one update per peer.
    * ``"alternating"``: the official TensorFlow code, where each peer's update is a separate
      call that draws a *fresh* mini-batch and sees the peers already updated. Here the peers
      take turns: at step ``i`` only peer ``i mod n`` moves, on that whole batch, against the
      others as they are. Give ``fit`` n times the epochs: each peer then makes exactly as many
      updates, on batches of the same size, as in the other orders.
    """
    T: float = 1.0
    target: str = "pairwise"
    order: str = "simultaneous"
    weight: float = 1.0
    peer_average: str = "mean"

    def __post_init__(self):
        check_temperature(self.T)
        check_choice("target", self.target, losses.PEER_TARGETS)
        check_choice("order", self.order, UPDATE_ORDERS)
        check_non_negative("weight", self.weight)
        check_choice("peer_average", self.peer_average, losses.PEER_AVERAGES)

    def peer_loss(self, logits: Mapping[str, Tensor], name: str, y: Tensor) -> Tensor:
        """Peer ``name``'s loss, given the whole cohort's logits (a dict name -> (B, K))."""
        if len(logits) < 2:
            raise ValueError(f"mutual learning needs a cohort of at least 2 peers, got {len(logits)}")
        others = [z for other, z in logits.items() if other != name]
        return losses.mutual_learning_loss(logits[name], others, y, T=self.T, target=self.target,
                                           weight=self.weight, peer_average=self.peer_average)

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        if self.order == "alternating":
            return self._alternating_step(model, batch, update)
        logits = model(batch.x)                                        # name -> (B, K)
        names = list(logits)
        if self.order == "simultaneous":
            per_peer = {name: self.peer_loss(logits, name, batch.y) for name in names}
            loss = torch.stack(list(per_peer.values())).sum()          # peers share no weights
            return StepOutput(loss, logits, _named("loss", per_peer))
        per_peer, seen = {}, {}
        for index, name in enumerate(names):
            if index > 0:
                logits = model(batch.x)                                # the others see it moved
            per_peer[name], seen[name] = self.peer_loss(logits, name, batch.y), logits[name].detach()
            update(per_peer[name])                                     # moves this peer only
        loss = torch.stack([value.detach() for value in per_peer.values()]).sum()
        return StepOutput(loss, seen, _named("loss", per_peer), updated=True)

    def _alternating_step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        logits = model(batch.x)                                        # the peers as they are now
        names = list(logits)
        mover = names[batch.step % len(names)]                         # whose turn it is
        loss = self.peer_loss(logits, mover, batch.y)
        update(loss)                                                   # moves this peer only
        with torch.no_grad():                                          # the others' losses, reported
            per_peer = {name: loss.detach() if name == mover else self.peer_loss(logits, name, batch.y)
                        for name in names}
        seen = {name: z.detach() for name, z in logits.items()}
        return StepOutput(loss.detach(), seen, _named("loss", per_peer), updated=True)


class FeatureHint(nn.Module):
    """FitNets-style hint (Romero et al. 2015), trained in one stage with the labels.

    ``L = CE(z_s, y) + beta * hint_loss(regressor(f_s), f_t)`` where ``f_s`` is the student's
    feature ``student_feature`` (from ``model.forward_with_features``) and ``f_t`` the
    teacher's cached feature ``batch.extras[teacher_feature]``. The regressor (an
    :class:`kdkit.models.Adaptor`) belongs to the method: ``fit`` trains it with the student,
    and it is saved with the method's ``state_dict``. An example of a training step with
    trainable parts of its own.
    """

    def __init__(self, regressor: nn.Module, *, student_feature: str, teacher_feature: str,
                 beta: float = 1.0):
        super().__init__()
        self.regressor = regressor
        self.student_feature, self.teacher_feature = student_feature, teacher_feature
        self.beta = check_positive("beta", beta)

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        logits, features = model.forward_with_features(batch.x)
        if self.student_feature not in features:
            raise ValueError(f"student_feature {self.student_feature!r} is not one of the model's "
                             f"features {list(features)}")
        hint = losses.hint_loss(self.regressor(features[self.student_feature]),
                                _extra(batch, self.teacher_feature, self))
        hard = losses.cross_entropy(logits, batch.y)
        return StepOutput(hard + self.beta * hint, logits, {"ce": hard.detach(), "hint": hint.detach()})

    def extra_repr(self) -> str:
        return (f"student_feature={self.student_feature!r}, teacher_feature={self.teacher_feature!r}, "
                f"beta={self.beta:g}")


def _attention_over_pairs(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Attention transfer summed over the layer pairs (the authors' code form)."""
    return sum(losses.attention_transfer_loss(s, t) for s, t in zip(student, teacher))


TRANSFER_LOSSES: Mapping[str, Callable[[list[Tensor], list[Tensor]], Tensor]] = MappingProxyType({
    "fitnet": lambda s, t: losses.hint_loss(s[0], t[0]),
    "attention": _attention_over_pairs,
    "similarity": lambda s, t: losses.similarity_preserving_loss(s[0], t[0]),
    "rkd": lambda s, t: losses.rkd_loss(s[0].flatten(1), t[0].flatten(1)),
    "pkt": lambda s, t: losses.pkt_loss(s[0].flatten(1), t[0].flatten(1)),
    "cc": lambda s, t: losses.correlation_congruence_loss(s[0].flatten(1), t[0].flatten(1)),
})
"""The feature- and relation-based losses a :class:`KnowledgeTransfer` can train with, each on
lists of student and teacher features (one pair, or one per layer for attention transfer), in
the conventions of :mod:`kdkit.losses` (RepDistiller's, unless a docstring there says otherwise).
The relations between examples read one vector per example: a feature map is flattened."""


MIN_RELATION_BATCH = 3
RELATIONS_BETWEEN_EXAMPLES = ("similarity", "rkd", "pkt", "cc")


class KnowledgeTransfer(nn.Module):
    """One feature- or relation-based method, with or without Hinton's KD term, in one stage.

    ``L = (1 - alpha) CE(z_s, y) + alpha T^2 KL(p_t^T || p_s^T) + beta * L_method(f_s, f_t)``

    as RepDistiller trains them (its ``gamma``, ``alpha``, ``beta``; with ``alpha = 0`` the first
    two terms are plain cross-entropy, RepDistiller's default for every method but KD).
    ``layers`` pairs each student feature (``model.forward_with_features``) with a teacher
    feature cached in the batch (``batch.extras``, see
    :func:`kdkit.train.with_teacher_outputs`); ``adaptor``, if given, maps the student's first
    feature to the teacher's shape (FitNets' regressor) and is trained with the student.
    """

    def __init__(self, method: str, *, beta: float, layers: Mapping[str, str], adaptor: nn.Module | None = None,
                 alpha: float = 0.0, T: float = 4.0):
        super().__init__()
        self.method = check_choice("method", method, TRANSFER_LOSSES)
        self.beta = check_non_negative("beta", beta)
        self.alpha = check_unit_interval("alpha", alpha)
        self.T = check_temperature(T)
        if not layers:
            raise ValueError("layers must pair at least one student feature with a teacher feature")
        if len(layers) > 1 and method != "attention":
            raise ValueError(f"{method} compares one pair of features; got {len(layers)} pairs {dict(layers)} "
                             "(only attention transfer sums over several)")
        if adaptor is not None and method != "fitnet":
            raise ValueError(f"an adaptor (a FitNets regressor) has no place in {method}: its relations or "
                             "attention maps compare networks of different widths as they are")
        self.layers = dict(layers)
        self.adaptor = adaptor

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        logits, features = model.forward_with_features(batch.x)
        missing = set(self.layers) - set(features)
        if missing:
            raise ValueError(f"student features {sorted(missing)} are not among the model's {list(features)}")
        student = [features[name] for name in self.layers]
        if self.adaptor is not None:
            student[0] = self.adaptor(student[0])
        teacher = [_extra(batch, name, self) for name in self.layers.values()]
        if self.method in RELATIONS_BETWEEN_EXAMPLES and len(batch.x) < MIN_RELATION_BATCH:
            transfer = logits.new_zeros(())  # a last mini-batch of 1 or 2 examples has no relations (RKD's angles need 3)
        else:
            transfer = TRANSFER_LOSSES[self.method](student, teacher)
        if self.alpha > 0:
            response = losses.kd_loss(logits, _teacher_logits(batch, self), batch.y, T=self.T, alpha=self.alpha)
        else:
            response = losses.cross_entropy(logits, batch.y)
        return StepOutput(response + self.beta * transfer, logits,
                          {"response": response.detach(), self.method: transfer.detach()})

    def extra_repr(self) -> str:
        # Exact values (repr, not :g): the repr is part of a cached run's key.
        kd = f", alpha={self.alpha!r}, T={self.T!r}" if self.alpha > 0 else ""
        return f"method={self.method!r}, beta={float(self.beta)!r}, layers={self.layers}{kd}"


class SelfDistillation(nn.Module):
    """Be Your Own Teacher (Zhang et al., ICCV 2019): a multi-exit network whose deepest exit
    teaches its shallow exits, in one training run, with no separate teacher.

    The model is a :class:`kdkit.models.MultiExit` network; its deepest output ``final``
    (logits ``z_C``, and ``f_C``, the pooled feature its classifier reads) teaches every
    shallow exit ``i`` (logits ``z_i``, pooled feature ``f_i``):

    ``L = CE(z_C, y) + sum_i [(1 - alpha) CE(z_i, y) + alpha T^2 KL(p_C^T || p_i^T) + beta ||r_i(f_i) - f_C||^2]``

    with ``z_C`` and ``f_C`` detached (the teacher is not pulled towards its students) and
    ``||.||^2`` the mean squared error through ``r_i``, a linear regressor owned by this
    method (trained with the model). The three terms can be switched off one by one:

    * ``deep_supervision=False``: the shallow exits' cross-entropy reaches only their own
      linear heads (read-out probes), not the backbone. With ``alpha = beta = 0`` that is the
      plain network, with its exits measured for free; the KL and the hint, if on, still reach
      the backbone.
    * ``alpha = 0``: no distillation from the deepest exit. ``beta = 0``: no feature hint
      (and no regressors).

    The two public codes differ (``t_squared``, ``scale_final``): the ICCV reimplementation
    scales the soft term by ``T^2`` and the deepest exit's cross-entropy by ``1 - alpha``;
    the authors' later code does neither. Defaults: ``T^2`` on (as in Hinton's KD, so
    ``alpha`` means the same at every T), deepest exit weighted 1. ``seed`` draws the
    regressors' initial weights (the model's own weights are left as they are).
    """

    def __init__(self, model: nn.Module, *, alpha: float = 0.3, T: float = 3.0, beta: float = 0.0,
                 deep_supervision: bool = True, t_squared: bool = True, scale_final: bool = False,
                 seed: int = 0):
        super().__init__()
        exits = getattr(model, "exits", None)
        if not isinstance(exits, nn.ModuleDict) or getattr(model, "main_output", None) != "final":
            raise ValueError(f"self-distillation needs a kdkit.models.MultiExit network, got {type(model).__name__}")
        self.alpha = check_unit_interval("alpha", alpha)
        self.T = check_temperature(T)
        self.beta = check_non_negative("beta", beta)
        self.deep_supervision, self.t_squared, self.scale_final = bool(deep_supervision), bool(t_squared), bool(scale_final)
        self.regressors = nn.ModuleDict()
        if self.beta > 0:
            deepest = model.backbone.classifier.in_features
            with torch.random.fork_rng(devices=[]):                # the model's weights stay as drawn
                torch.manual_seed(seed)
                for name, head in exits.items():
                    self.regressors[name] = nn.Linear(head.in_features, deepest)

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        outputs, features = model.forward_with_features(batch.x)
        teacher = outputs["final"].detach()                             # (B, K)
        hint_target = features["embedding"].detach()                    # (B, C_final)
        hard = losses.cross_entropy(outputs["final"], batch.y)
        loss = (1 - self.alpha) * hard if self.scale_final else hard
        terms = {"ce": hard.detach(), "exit_ce": torch.zeros(()), "kd": torch.zeros(()), "hint": torch.zeros(())}
        for name, head in model.exits.items():
            exit_loss, exit_terms = self._exit_loss(name, head, outputs[name], features[name], teacher,
                                                    hint_target, batch.y)
            loss = loss + exit_loss
            terms.update({k: terms[k] + v for k, v in exit_terms.items()})
        return StepOutput(loss, outputs, terms)

    def _exit_loss(self, name, head, logits, feature, teacher, hint_target, y):
        """One shallow exit's three terms, weighted and summed, and each term on its own (the
        metrics: ``ce`` the deepest exit's cross-entropy, ``exit_ce``, ``kd`` and ``hint``
        summed over the shallow exits)."""
        vector = pool_to_vector(feature)                                # (B, C_i)
        probe_logits = logits if self.deep_supervision else head(vector.detach())
        hard = losses.cross_entropy(probe_logits, y)
        loss = (1 - self.alpha) * hard
        soft = hint = torch.zeros(())
        if self.alpha > 0:
            soft = losses.distillation_kl(logits, teacher, T=self.T)
            soft = soft if self.t_squared else soft / (self.T * self.T)
            loss = loss + self.alpha * soft
        if self.beta > 0:
            hint = losses.hint_loss(self.regressors[name](vector), hint_target)
            loss = loss + self.beta * hint
        return loss, {"exit_ce": hard.detach(), "kd": soft.detach(), "hint": hint.detach()}

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha:g}, T={self.T:g}, beta={self.beta:g}, deep_supervision={self.deep_supervision}, "
                f"t_squared={self.t_squared}, scale_final={self.scale_final}")


STAGE_LOSSES = ("mse", "cosine")


def _stage_loss(kind: str, student: Tensor, teacher: Tensor) -> Tensor:
    return losses.hint_loss(student, teacher) if kind == "mse" else losses.cosine_feature_loss(student, teacher)


class StageRegression(nn.Module):
    """One stage of Stagewise KD (Kulkarni et al. 2019): the student's stage ``stage`` regresses
    the teacher's feature map at the same depth, and nothing else.

    ``L = MSE(f_s, f_t)`` (``loss="mse"``, the paper's ``nn.MSELoss()``: a mean over every element)
    or ``1 - cos(f_s, f_t)`` per example (``loss="cosine"``), where ``f_s`` is the student's
    feature ``stage`` (``model.forward_with_features``; before the stage's last ReLU with
    ``pre_activation``) and ``f_t`` the teacher's cached map ``batch.extras[teacher_feature]``.
    There is no label term: the labels enter only at the last stage, the classifier.

    Train it with ``fit(..., trainable=[model.stage_modules()[stage]])`` so that only this stage
    moves: the stages below are frozen in eval mode, and the ones above are never used by the
    loss. ``regressor`` (optional, e.g. a 1x1 convolution) maps ``f_s`` to the teacher's shape
    before the loss, as in FitNets: it belongs to the method and is trained with the stage, and
    it is *not* part of the student (the stage above reads ``f_s`` itself).

    Metrics: ``stage_loss``, and ``relative_mse``, the MSE over the mean square of the teacher's
    map (0: matched; 1: no better than predicting zeros), comparable across stages.
    """

    def __init__(self, stage: str, *, teacher_feature: str, pre_activation: bool = False, loss: str = "mse",
                 regressor: nn.Module | None = None):
        super().__init__()
        self.stage, self.teacher_feature = stage, teacher_feature
        self.pre_activation = bool(pre_activation)
        self.loss = check_choice("loss", loss, STAGE_LOSSES)
        self.regressor = regressor

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        logits, features = model.forward_with_features(batch.x, pre_activation=self.pre_activation)
        if self.stage not in features:
            raise ValueError(f"stage {self.stage!r} is not one of the model's features {list(features)}")
        student = features[self.stage]                                   # (B, C, L)
        if self.regressor is not None:
            student = self.regressor(student)
        teacher = _extra(batch, self.teacher_feature, self)                # (B, C, L)
        loss = _stage_loss(self.loss, student, teacher)
        with torch.no_grad():
            relative = (student - teacher).pow(2).mean() / teacher.pow(2).mean().clamp_min(1e-12)
        return StepOutput(loss, logits, {"stage_loss": loss.detach(), "relative_mse": relative})

    def extra_repr(self) -> str:
        return (f"stage={self.stage!r}, teacher_feature={self.teacher_feature!r}, "
                f"pre_activation={self.pre_activation}, loss={self.loss!r}, "
                f"regressor={'yes' if self.regressor is not None else 'no'}")


class SimultaneousHints(nn.Module):
    """Stagewise KD's baseline (Kulkarni et al. 2019, ``simultaneous_kd.py``): every stage's
    feature loss and the labels, all at once, on the whole student.

    ``L = (CE(z_s, y) + sum_k MSE(f_s^k, f_t^k)) / (N + 1)`` over the ``N`` stages of ``stages``
    (teacher maps cached as ``batch.extras[f"{teacher}.{stage}"]``); the division is the official
    code's "normaliser" (with Adam it barely changes the run, as its comment says). The MSEs
    of different stages have different scales and are summed unweighted, as in the code.
    """

    def __init__(self, stages, *, teacher: str = "teacher", loss: str = "mse"):
        super().__init__()
        self.stages, self.teacher = tuple(stages), teacher
        if not self.stages:
            raise ValueError("stages must name at least one stage to match")
        self.loss = check_choice("loss", loss, STAGE_LOSSES)

    def step(self, model: nn.Module, batch: Batch, update: Update) -> StepOutput:
        logits, features = model.forward_with_features(batch.x)
        hard = losses.cross_entropy(logits, batch.y)
        hints = [_stage_loss(self.loss, features[name], _extra(batch, f"{self.teacher}.{name}", self))
                 for name in self.stages]
        loss = (hard + sum(hints)) / (len(hints) + 1)
        return StepOutput(loss, logits, {"ce": hard.detach(), **_named("hint", dict(zip(self.stages, hints)))})

    def extra_repr(self) -> str:
        return f"stages={self.stages}, teacher={self.teacher!r}, loss={self.loss!r}"


def _named(prefix: str, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{"loss/peer1": ..., ...}``: per-output metrics, detached."""
    return {f"{prefix}/{name}": value.detach() for name, value in values.items()}


OBJECTIVES = {"labels": CrossEntropy, "kd": Distillation, "mimic": LogitMimic,
              "soft_targets": SoftTargets, "label_smoothing": LabelSmoothing,
              "virtual_teacher": VirtualTeacher, "multi_teacher": MultiTeacher,
              "mutual_learning": MutualLearning}


def make_objective(name: str, **hyper_parameters):
    """An objective by name, e.g. ``make_objective("kd", T=4, alpha=0.5)``."""
    return lookup("objective", name, OBJECTIVES)(**hyper_parameters)
