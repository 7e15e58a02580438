"""One training loop for every method, plus evaluation and cached teacher logits.

``fit(model, train, val, objective=...)`` is the only loop in kdkit: the method is the
*objective* (see :mod:`kdkit.objectives`), and anything that watches training (progress
bars, live plots) is a *callback*. It never prints or plots by itself.

Speed: the data already sit in memory as tensors, so a mini-batch is one fancy-indexing
operation on a shuffled index; no DataLoader, no worker processes, no per-example Python.
The teacher runs once, before training (:func:`with_teacher_logits`), not once per step.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdkit.data import UNLABELED, DataSplits, Split
from kdkit.objectives import Batch, CrossEntropy
from kdkit.validation import (check_choice, check_finite, check_labels, check_positive,
                              check_positive_int, tensor_checks_done)

Tensor = torch.Tensor


@dataclass
class History:
    """Per-epoch metrics of one run: a list of dicts with the same keys.

    Keys: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (when a
    validation split was given), ``lr`` and ``seconds``. ``interrupted`` is True when the
    run was stopped early by the user; the model then holds the weights of the last
    complete epoch, the one ``history.last`` describes.
    """
    records: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict:
        if not self.records:
            raise ValueError("the history is empty: no epoch has finished")
        return self.records[-1]

    def series(self, key: str) -> list[float]:
        """One metric over the epochs, e.g. ``history.series("val_acc")``."""
        return [record[key] for record in self.records]


class FitInterrupted(KeyboardInterrupt):
    """Raised when a run is interrupted; ``.history`` holds the epochs that finished."""

    def __init__(self, history: History):
        super().__init__("training interrupted; the model holds the weights of the last "
                         f"complete epoch ({len(history)} of them)")
        self.history = history


class Callback:
    """Hooks called by :func:`fit`. Override the ones you need."""

    def on_fit_start(self, model: nn.Module, epochs: int) -> None:
        pass

    def on_epoch_end(self, history: History, model: nn.Module) -> None:
        pass

    def on_fit_end(self, history: History) -> None:
        pass


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over epochs showing the latest validation accuracy."""

    def __init__(self, description: str = "training"):
        self.description = description
        self._bar = None

    def on_fit_start(self, model, epochs):
        from tqdm.auto import tqdm
        self._bar = tqdm(total=epochs, desc=self.description, leave=False)

    def on_epoch_end(self, history, model):
        record = history.last
        if "val_acc" in record:
            self._bar.set_postfix(val_acc=f"{record['val_acc']:.3f}")
        self._bar.update(1)

    def on_fit_end(self, history):
        self._bar.close()


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def fit(model: nn.Module, train: Split, val: Split | None = None, *,
        objective: Callable[[Tensor, Batch], Tensor] = CrossEntropy(), epochs: int = 20,
        batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
        optimizer: str = "adam", schedule: str = "constant", seed: int = 0,
        callbacks: Sequence[Callback] = ()) -> History:
    """Train ``model`` on ``train`` with ``objective``; return the per-epoch History.

    ``seed`` fixes the order of the mini-batches (the model's initial weights are fixed
    when it is built: :func:`kdkit.models.build_model`). ``optimizer`` is "adam" or "sgd"
    (momentum 0.9); ``schedule`` "constant" or "cosine" (decay to 0 over ``epochs``).
    On Ctrl-C the model is rolled back to the last complete epoch and
    :class:`FitInterrupted` (a KeyboardInterrupt) carries the History.
    """
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    check_positive("lr", lr)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    _check_before_training(model, train, val, objective)
    opt = _make_optimizer(model, optimizer, lr, weight_decay)
    scheduler = _make_scheduler(opt, schedule, epochs)
    generator = torch.Generator().manual_seed(seed)
    history = History()
    last_good_state = _copy_state(model)
    for callback in callbacks:
        callback.on_fit_start(model, epochs)
    try:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            record = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
            record.update(_train_one_epoch(model, train, objective, opt, batch_size, generator))
            scheduler.step()
            if val is not None:
                record.update({f"val_{k}": v for k, v in evaluate(model, val).items()})
            record["seconds"] = time.perf_counter() - started
            history.records.append(record)
            last_good_state = _copy_state(model)
            for callback in callbacks:
                callback.on_epoch_end(history, model)
    except KeyboardInterrupt:
        model.load_state_dict(last_good_state)
        history.interrupted = True
        raise FitInterrupted(history) from None
    except FloatingPointError:
        model.load_state_dict(last_good_state)  # keep usable weights, not NaNs
        raise
    finally:
        model.eval()
        for callback in callbacks:
            callback.on_fit_end(history)
    return history


def _check_before_training(model, train: Split, val: Split | None, objective) -> None:
    """Fail with a clear message before the first update, not halfway through training.

    The splits are checked once, and the objective is run on a few examples (including
    an unlabeled one, if any) with all of its own checks on; the training steps then skip
    the per-batch tensor checks.
    """
    check_finite("train.x", train.x)
    if train.teacher_logits is not None:
        check_finite("train.teacher_logits", train.teacher_logits)
    probe = torch.cat([torch.arange(min(2, len(train))),
                       torch.nonzero(train.y == UNLABELED)[:1, 0]])
    logits = predict_logits(model, train.x[probe])  # eval mode: batch-norm statistics untouched
    for name, split in (("train", train), ("val", val)):
        if split is None:
            continue
        check_finite(f"{name}.x", split.x)
        known_labels = split.y[split.y != UNLABELED]
        if name == "val" and len(known_labels) == 0:
            raise ValueError("val must hold labelled examples to measure accuracy on")
        check_labels(f"{name}.y", known_labels, batch=len(known_labels), num_classes=logits.shape[1])
    teacher = None if train.teacher_logits is None else train.teacher_logits[probe]
    try:
        objective(logits, Batch(train.x[probe], train.y[probe], teacher))
    except ValueError as error:
        if bool((train.y[probe] == UNLABELED).any()) and "labels" in str(error):
            raise ValueError(f"{objective!r} needs labels, but the training split holds unlabeled "
                             "examples (y = -1); use a label-free objective such as LogitMimic") from None
        raise


def _train_one_epoch(model, train: Split, objective, opt, batch_size, generator) -> dict:
    model.train()
    # Shuffle the whole split once per epoch; the batches are then slices (views), which is
    # cheaper than gathering x, y and the teacher's logits anew at every step.
    order = torch.randperm(len(train), generator=generator)
    x, y = train.x[order], train.y[order]
    teacher = None if train.teacher_logits is None else train.teacher_logits[order]
    step_losses, predictions = [], []  # kept as tensors: no Python sync per step
    with tensor_checks_done():
        for start in range(0, len(train), batch_size):
            rows = slice(start, start + batch_size)
            batch = Batch(x[rows], y[rows], None if teacher is None else teacher[rows])
            logits = model(batch.x)
            loss = objective(logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_losses.append(loss.detach())
            predictions.append(logits.detach().argmax(dim=1))
    step_sizes = torch.tensor([len(p) for p in predictions], dtype=torch.float32)
    loss_sum = (torch.stack(step_losses) * step_sizes).sum()
    if not torch.isfinite(loss_sum):
        raise FloatingPointError("the training loss became NaN or inf; lower the learning rate")
    known = y != UNLABELED
    correct = (torch.cat(predictions) == y)[known]
    accuracy = float(correct.float().mean()) if len(correct) else float("nan")
    return {"train_loss": float(loss_sum) / len(train), "train_acc": accuracy}


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block on ``threads`` torch threads (None: leave torch's setting), then restore."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *, batch_size: int = 2048) -> Tensor:
    """The model's logits for all of ``x`` (eval mode, no gradients), shape (N, K)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, split: Split) -> dict[str, float]:
    """Accuracy and mean cross-entropy on the labelled examples of ``split``."""
    known = split.y != UNLABELED
    if not bool(known.any()):
        raise ValueError("evaluate needs labelled examples; this split has none")
    logits = predict_logits(model, split.x[known])
    labels = split.y[known]
    return {"loss": float(F.cross_entropy(logits, labels)),
            "acc": float((logits.argmax(dim=1) == labels).float().mean())}


def with_teacher_logits(teacher: nn.Module | Sequence[nn.Module],
                        data: DataSplits | Split) -> DataSplits | Split:
    """Run the teacher once over every split and attach its logits (N, K) to each.

    With a list of teachers their logits are averaged: the ensemble teacher of
    Ba & Caruana (2014) and Hinton et al. (2015).
    """
    models = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    if not models:
        raise ValueError("give a teacher or a non-empty list of teachers")

    def logits_for(split: Split) -> Tensor:
        return torch.stack([predict_logits(m, split.x) for m in models]).mean(dim=0)

    if isinstance(data, Split):
        return data.with_teacher_logits(logits_for(data))
    return data.replace(train=data.train.with_teacher_logits(logits_for(data.train)),
                        val=data.val.with_teacher_logits(logits_for(data.val)),
                        test=data.test.with_teacher_logits(logits_for(data.test)))


def _make_optimizer(model, name, lr, weight_decay):
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)


def _make_scheduler(opt, name, epochs):
    check_choice("schedule", name, SCHEDULES)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


def _copy_state(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}
