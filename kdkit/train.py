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
import contextvars
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdkit.data import UNLABELED, DataSplits, Split
from kdkit.objectives import NO_EXTRAS, Batch, CrossEntropy, StepOutput, is_training_step
from kdkit.validation import (check_choice, check_finite, check_inputs, check_labels, check_non_negative,
                              check_positive, check_positive_int, check_seed, tensor_checks_done)

Tensor = torch.Tensor


@dataclass
class History:
    """Per-epoch metrics of one run: a list of dicts with the same keys.

    Always: ``epoch``, ``train_loss``, ``train_acc``, ``lr`` and ``seconds``; ``val_loss`` and
    ``val_acc`` when a validation split was given. A model with several outputs adds
    ``train_acc/<name>``, ``val_acc/<name>`` and ``val_loss/<name>`` for each (peers, exits);
    a training step's extra metrics add ``train_<metric>`` (e.g. ``train_hint``). ``interrupted`` is True when the
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
        """One metric over the epochs it was measured at, e.g. ``history.series("val_acc")``
        (every epoch, unless ``fit`` validated only every few: :meth:`epochs_of` says which)."""
        return [record[key] for record in self.records if key in record]

    def epochs_of(self, key: str) -> list[int]:
        """The epochs at which ``key`` was measured (the x values of :meth:`series`)."""
        return [record["epoch"] for record in self.records if key in record]


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
    """A ``tqdm.auto`` bar over the epochs of one run, showing the latest validation accuracy.

    Attached where a user waits for a run: a cached teacher's first training.
    """

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
        if self._bar is not None:
            self._bar.close()


class RunCounter(Callback):
    """A ``tqdm.auto`` bar that counts finished runs: for a long series of them, such as
    ``python -m kdkit reproduce`` (attach it to every run with :func:`watching_every_fit`)."""

    def __init__(self, description: str = "runs"):
        from tqdm.auto import tqdm
        self._bar = tqdm(desc=description, unit="run")

    def on_fit_end(self, history):
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


_EVERY_FIT: contextvars.ContextVar[tuple[Callback, ...]] = contextvars.ContextVar("kdkit_every_fit",
                                                                                  default=())


@contextlib.contextmanager
def watching_every_fit(*callbacks: Callback) -> Iterator[None]:
    """Attach ``callbacks`` to every :func:`fit` inside the block, however deep the call.

    Lets a caller watch runs that an experiment function starts without threading a
    callback through every signature (a progress bar over a whole reproduction).
    """
    token = _EVERY_FIT.set(_EVERY_FIT.get() + callbacks)
    try:
        yield
    finally:
        _EVERY_FIT.reset(token)


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def fit(model: nn.Module, train: Split, val: Split | None = None, *,
        objective=CrossEntropy(), epochs: int = 20,
        batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
        optimizer: str = "adam", schedule: str = "constant", seed: int = 0,
        callbacks: Sequence[Callback] = (),
        trainable: Iterable[nn.Module | nn.Parameter] | None = None,
        validate_every: int = 1) -> History:
    """Train ``model`` on ``train`` with ``objective``; return the per-epoch History.

    ``objective`` is a logit objective or a training step (see :mod:`kdkit.objectives`); a
    training step that is an ``nn.Module`` (it owns adaptors) is trained along with the model.
    ``model`` may return one logits tensor or a dict of them (a :class:`kdkit.models.Cohort`
    of peers, a :class:`kdkit.models.MultiExit` network): each output is then measured on
    its own (``val_acc/<name>``), and ``val_acc`` is the model's main output
    (``model.main_output``) or, without one, the mean over the outputs.

    ``trainable`` trains only these sub-modules (or parameters) of ``model``: everything
    else gets no gradient, is left out of the optimiser and stays in eval mode, so the
    batch-norm statistics of frozen stages do not move (Stagewise KD).

    ``validate_every`` measures ``val`` after every n-th epoch and after the last one only (a
    run nobody watches needs only its last epoch's; measuring does not change the training,
    so the weights are the same either way).

    ``seed`` fixes the order of the mini-batches (the model's initial weights are fixed
    when it is built: :func:`kdkit.models.build_model`). ``optimizer`` is "adam" or "sgd"
    (momentum 0.9); ``schedule`` "constant" or "cosine" (decay to 0 over ``epochs``).
    On Ctrl-C the model is rolled back to the last complete epoch and
    :class:`FitInterrupted` (a KeyboardInterrupt) carries the History.
    """
    epochs = check_positive_int("epochs", epochs)
    validate_every = check_positive_int("validate_every", validate_every)
    batch_size = check_positive_int("batch_size", batch_size)
    check_positive("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    check_seed(seed)
    for name, split in (("train", train), ("val", val)):
        if not (isinstance(split, Split) or (name == "val" and split is None)):
            hint = f" (pass data.{name})" if isinstance(split, DataSplits) else ""
            raise ValueError(f"{name} must be a kdkit Split{hint}, got {type(split).__name__}")
    if len(train) == 0:
        raise ValueError("the training split is empty")
    method = objective if isinstance(objective, nn.Module) else None
    parameters = _trainable_parameters(model, trainable) + (list(method.parameters()) if method else [])
    if not parameters:
        raise ValueError("nothing to train: trainable selects no parameter of the model")
    chosen = {id(p) for p in parameters}
    frozen = [p for p in model.parameters() if id(p) not in chosen]
    _check_before_training(model, train, val, objective)
    opt = make_optimizer(parameters, optimizer, lr, weight_decay)
    scheduler = _make_scheduler(opt, schedule, epochs)
    generator = torch.Generator().manual_seed(seed)
    callbacks = (*callbacks, *_EVERY_FIT.get())
    history = History()
    states = [model] + ([method] if method else [])
    last_good_state = [_copy_state(m) for m in states]
    for callback in callbacks:
        callback.on_fit_start(model, epochs)
    try:
        with _frozen(frozen):
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                record = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
                _train_mode(model, method)
                record.update(_train_one_epoch(model, train, objective, opt, batch_size, generator, epoch))
                scheduler.step()
                if val is not None and (epoch % validate_every == 0 or epoch == epochs):
                    record.update({f"val_{k}": v for k, v in evaluate(model, val).items()})
                record["seconds"] = time.perf_counter() - started
                history.records.append(record)
                last_good_state = [_copy_state(m) for m in states]
                for callback in callbacks:
                    callback.on_epoch_end(history, model)
    except KeyboardInterrupt:
        _restore(states, last_good_state)
        history.interrupted = True
        raise FitInterrupted(history) from None
    except FloatingPointError:
        _restore(states, last_good_state)  # keep usable weights, not NaNs
        raise
    finally:
        for module in states:
            module.eval()
        for callback in callbacks:
            callback.on_fit_end(history)
    return history


def _trainable_parameters(model: nn.Module, trainable) -> list[nn.Parameter]:
    """The parameters ``fit`` optimises: the model's (those that require a gradient), or
    only those of ``trainable``."""
    if trainable is None:
        return [p for p in model.parameters() if p.requires_grad]
    owned = {id(p) for p in model.parameters()}
    chosen: dict[int, nn.Parameter] = {}
    for part in trainable:
        if isinstance(part, nn.Parameter):
            parameters = [part]
        elif isinstance(part, nn.Module):
            parameters = list(part.parameters())
        else:
            raise ValueError(f"trainable must hold sub-modules or parameters of the model, got {part!r}")
        for p in parameters:
            if id(p) not in owned:
                raise ValueError("trainable holds a parameter that is not part of the model")
            chosen.setdefault(id(p), p)
    return list(chosen.values())


@contextlib.contextmanager
def _frozen(parameters: Sequence[nn.Parameter]):
    """No gradient for ``parameters`` inside the block; their flags are restored after."""
    flags = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)


def _train_mode(model: nn.Module, method: nn.Module | None) -> None:
    """Train mode, except for frozen parts, which stay in eval mode.

    A sub-module all of whose parameters are frozen is put in eval mode with everything
    inside it, so its batch norm uses (and keeps) its running statistics and its dropout
    is off. Parameter-free layers next to trainable ones (a dropout) keep training.
    """
    model.train()
    if method is not None:
        method.train()

    def freeze_modes(module: nn.Module) -> None:
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
            return
        for child in module.children():
            freeze_modes(child)

    freeze_modes(model)


def _check_before_training(model, train: Split, val: Split | None, objective) -> None:
    """Fail with a clear message before the first update, not halfway through training.

    The splits are checked once, and the objective is run on a few examples (including
    an unlabeled one, if any) with all of its own checks on, in eval mode and without
    gradients (so nothing moves); the training steps then skip the per-batch tensor checks.
    """
    if not is_training_step(objective) and not callable(objective):
        raise ValueError(f"objective must be a loss on the logits (objective(logits, batch)) or have "
                         f"a step(model, batch, update) method, got {objective!r}")
    check_inputs("train.x", train.x)
    if train.teacher_logits is not None:
        check_finite("train.teacher_logits", train.teacher_logits)
    for name, tensor in train.extras.items():
        check_finite(f"train.extras[{name!r}]", tensor)
    probe = torch.cat([torch.arange(min(4, len(train))),  # 4: relation losses need 3 examples
                       torch.nonzero(train.y == UNLABELED)[:1, 0]])
    outputs = model_outputs(model, train.x[probe], "train.x")  # eval mode: batch norm untouched
    num_classes = _first(outputs).shape[1]
    for name, split in (("train", train), ("val", val)):
        if split is None:
            continue
        check_inputs(f"{name}.x", split.x)
        if split.x.shape[1:] != train.x.shape[1:]:
            raise ValueError(f"{name}.x has examples of shape {tuple(split.x.shape[1:])}, train.x of "
                             f"shape {tuple(train.x.shape[1:])}")
        known_labels = split.y[split.y != UNLABELED]
        if name == "val" and len(known_labels) == 0:
            raise ValueError("val must hold labelled examples to measure accuracy on")
        check_labels(f"{name}.y", known_labels, batch=len(known_labels), num_classes=num_classes)
    batch = _batch(train, probe)
    try:
        if is_training_step(objective):
            _probe_step(model, objective, batch)
        else:
            if isinstance(outputs, Mapping):
                raise ValueError(f"the model returns several outputs {list(outputs)}: train it with a "
                                 f"training step that knows them (e.g. MutualLearning), not {objective!r}")
            objective(outputs, batch)
    except ValueError as error:
        if bool((batch.y == UNLABELED).any()) and "labels" in str(error):
            raise ValueError(f"{objective!r} needs labels, but the training split holds unlabeled "
                             "examples (y = -1); use a label-free objective such as LogitMimic") from None
        raise


def _probe_step(model: nn.Module, method, batch: Batch) -> None:
    """Run a training step once in eval mode, without gradients or updates, to check it."""
    modules = [m for m in (model, method) if isinstance(m, nn.Module)]
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            out = method.step(model, batch, lambda _loss: None)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    if not isinstance(out, StepOutput):
        raise ValueError(f"{method!r}.step must return a StepOutput, got {type(out).__name__}")
    if not isinstance(out.loss, Tensor) or out.loss.dim() != 0:
        raise ValueError(f"{method!r}.step must return a scalar loss tensor")


def _batch(split: Split, rows, step: int = 0) -> Batch:
    teacher = None if split.teacher_logits is None else split.teacher_logits[rows]
    extras = {k: v[rows] for k, v in split.extras.items()} if split.extras else NO_EXTRAS
    return Batch(split.x[rows], split.y[rows], teacher, extras, step)


def _train_one_epoch(model, train: Split, objective, opt, batch_size, generator, epoch: int = 1) -> dict:
    # Shuffle the whole split once per epoch; the batches are then slices (views), which is
    # cheaper than gathering x, y and the teacher's outputs anew at every step.
    shuffled = train.subset(torch.randperm(len(train), generator=generator))
    y = shuffled.y
    step_losses, predictions, metrics = [], [], []  # kept as tensors: no Python sync per step

    def update(loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with tensor_checks_done():
        if is_training_step(objective):
            steps_per_epoch = -(-len(train) // batch_size)
            for number, start in enumerate(range(0, len(train), batch_size)):
                batch = _batch(shuffled, slice(start, start + batch_size), (epoch - 1) * steps_per_epoch + number)
                out = objective.step(model, batch, update)
                if not out.updated:
                    update(out.loss)
                step_losses.append(out.loss.detach())
                predictions.append(_predictions(out.logits))
                metrics.append({k: v.detach() for k, v in out.metrics.items()})
        else:  # a loss on the logits: the common case, kept as lean as a hand-written loop
            for start in range(0, len(train), batch_size):
                batch = _batch(shuffled, slice(start, start + batch_size))
                logits = model(batch.x)
                loss = objective(logits, batch)
                update(loss)
                step_losses.append(loss.detach())
                predictions.append(logits.detach().argmax(dim=1))
    step_sizes = torch.tensor([len(_first(p)) for p in predictions], dtype=torch.float32)
    loss_sum = (torch.stack(step_losses) * step_sizes).sum()
    if not torch.isfinite(loss_sum):
        raise FloatingPointError("the training loss became NaN or inf; lower the learning rate")
    record = {"train_loss": float(loss_sum) / len(train)}
    record.update(_accuracies(predictions, y, model, prefix="train_acc"))
    for name in (metrics[0] if metrics else {}):
        values = torch.stack([m[name] for m in metrics])
        record[f"train_{name}"] = float((values * step_sizes).sum()) / len(train)
    return record


def _predictions(logits: Tensor | Mapping[str, Tensor]):
    if isinstance(logits, Mapping):
        return {name: z.detach().argmax(dim=1) for name, z in logits.items()}
    return logits.detach().argmax(dim=1)


def _accuracies(predictions: list, y: Tensor, model: nn.Module, *, prefix: str) -> dict[str, float]:
    """Accuracy on the labelled examples, per output for a model with several outputs."""
    known = y != UNLABELED

    def accuracy(predicted: Tensor) -> float:
        correct = (predicted == y)[known]
        return float(correct.float().mean()) if len(correct) else float("nan")

    if not isinstance(predictions[0], Mapping):
        return {prefix: accuracy(torch.cat(predictions))}
    per_output = {name: accuracy(torch.cat([p[name] for p in predictions])) for name in predictions[0]}
    return {prefix: main_value(model, per_output), **{f"{prefix}/{n}": v for n, v in per_output.items()}}


def main_value(model: nn.Module, per_output: Mapping[str, float]) -> float:
    """The headline number of a model with several outputs.

    The output named by ``model.main_output`` (the last exit of a multi-exit network), or,
    when the model names none (a cohort of equal peers), the mean over the outputs.
    """
    main = getattr(model, "main_output", None)
    if main is not None:
        return per_output[main]
    return sum(per_output.values()) / len(per_output)


def _first(outputs: Tensor | Mapping[str, Tensor]) -> Tensor:
    return next(iter(outputs.values())) if isinstance(outputs, Mapping) else outputs


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


def model_outputs(model: nn.Module, x: Tensor, name: str = "x") -> Tensor | dict[str, Tensor]:
    """:func:`predict_logits`, with a clear message when the model cannot take ``x`` or
    returns NaN or inf (NaN weights after a diverged run, a corrupted checkpoint)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected a torch module, got {type(model).__name__}")
    try:
        outputs = predict_logits(model, x)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ValueError(f"{type(model).__name__} cannot take {name} of shape {tuple(x.shape)} "
                         f"(torch says: {first_line}); was it built for this data set's input_shape?") from None
    for output_name, logits in (outputs.items() if isinstance(outputs, Mapping) else [("", outputs)]):
        if logits.dim() != 2:
            raise ValueError(f"{type(model).__name__} must return logits of shape (batch, classes), "
                             f"got {tuple(logits.shape)}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError(f"{type(model).__name__}'s outputs{' ' + output_name if output_name else ''} "
                             f"on {name} contain NaN or inf: its weights are probably NaN or inf "
                             "(a diverged run or a damaged checkpoint)")
    return outputs


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, *,
                   batch_size: int = 2048) -> Tensor | dict[str, Tensor]:
    """The model's logits for all of ``x`` (eval mode, no gradients), shape (N, K).

    A model with several outputs (a cohort, a multi-exit net) gives a dict name -> (N, K).
    """
    return _predict(model, x, batch_size=batch_size, call=model)


@torch.no_grad()
def predict_features(model: nn.Module, x: Tensor, *, batch_size: int = 2048) -> dict[str, Tensor]:
    """``model.forward_with_features`` over all of ``x`` (eval mode, no gradients).

    The dict holds the model's named features and its ``"logits"``.
    """
    if not callable(getattr(model, "forward_with_features", None)):
        raise ValueError(f"{type(model).__name__} does not expose its features "
                         "(no forward_with_features); use a kdkit MLP, CNN or ResNet")

    def call(chunk):
        logits, features = model.forward_with_features(chunk)
        return {**features, "logits": logits}

    return _predict(model, x, batch_size=batch_size, call=call)


def _predict(model: nn.Module, x: Tensor, *, batch_size: int, call):
    was_training = model.training
    model.eval()
    try:
        chunks = [call(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if isinstance(chunks[0], Mapping):
        return {name: torch.cat([c[name] for c in chunks]) for name in chunks[0]}
    return torch.cat(chunks)


def evaluate(model: nn.Module, split: Split) -> dict[str, float]:
    """Accuracy and mean cross-entropy on the labelled examples of ``split``.

    For a model with several outputs: ``acc/<name>`` and ``loss/<name>`` for each, and
    ``acc``/``loss`` for the main output (see :func:`main_value`).
    """
    if not isinstance(split, Split):
        raise ValueError(f"evaluate needs a kdkit Split (inputs and labels), got {type(split).__name__}")
    check_inputs("split.x", split.x)
    known = split.y != UNLABELED
    if not bool(known.any()):
        raise ValueError("evaluate needs labelled examples; this split has none")
    outputs = model_outputs(model, split.x[known], "split.x")
    labels = split.y[known]
    check_labels("split.y", labels, batch=len(labels), num_classes=_first(outputs).shape[1])

    def measure(logits: Tensor) -> dict[str, float]:
        return {"loss": float(F.cross_entropy(logits, labels)),
                "acc": float((logits.argmax(dim=1) == labels).float().mean())}

    if not isinstance(outputs, Mapping):
        return measure(outputs)
    per_output = {name: measure(logits) for name, logits in outputs.items()}
    result = {metric: main_value(model, {n: m[metric] for n, m in per_output.items()})
              for metric in ("loss", "acc")}
    for name, measured in per_output.items():
        result.update({f"{metric}/{name}": value for metric, value in measured.items()})
    return result


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
        check_inputs("x", split.x)
        each = [model_outputs(m, split.x, "x") for m in models]
        if any(isinstance(z, Mapping) for z in each):
            raise ValueError("a teacher must return one logits tensor (not a cohort or multi-exit net)")
        if len({z.shape[1] for z in each}) > 1:
            raise ValueError(f"the teachers disagree on the number of classes: {[z.shape[1] for z in each]}")
        return torch.stack(each).mean(dim=0)

    if isinstance(data, Split):
        return data.with_teacher_logits(logits_for(data))
    return data.replace(train=data.train.with_teacher_logits(logits_for(data.train)),
                        val=data.val.with_teacher_logits(logits_for(data.val)),
                        test=data.test.with_teacher_logits(logits_for(data.test)))


def with_teacher_outputs(teachers: Mapping[str, nn.Module] | Sequence[nn.Module],
                         data: DataSplits | Split, *, features: Sequence[str] = ()) -> DataSplits | Split:
    """Run each teacher once over every split and cache its outputs as ``extras``.

    For a teacher named ``name`` (a list is named ``teacher1``, ``teacher2``, ...) the
    split gains ``extras[f"{name}.logits"]`` (N, K) and, for each of ``features``,
    ``extras[f"{name}.{feature}"]`` (a feature of ``forward_with_features``). Each
    teacher's outputs are kept apart (not averaged), so a method can weigh or choose them;
    the teachers never run during training.
    """
    named = _named_teachers(teachers)

    def outputs_for(split: Split) -> Split:
        extras = {}
        for name, model in named.items():
            if features:
                computed = predict_features(model, split.x)
                for feature in ("logits", *features):
                    if feature not in computed:
                        raise ValueError(f"teacher {name!r} has no feature {feature!r}; "
                                         f"it has {[f for f in computed if f != 'logits']}")
                    extras[f"{name}.{feature}"] = computed[feature]
            else:
                extras[f"{name}.logits"] = model_outputs(model, split.x, "x")
        return split.with_extras(**extras)

    if isinstance(data, Split):
        return outputs_for(data)
    return data.replace(train=outputs_for(data.train), val=outputs_for(data.val), test=outputs_for(data.test))


def _named_teachers(teachers) -> dict[str, nn.Module]:
    if isinstance(teachers, Mapping):
        named = dict(teachers)
    elif isinstance(teachers, (list, tuple)):
        named = {f"teacher{i}": t for i, t in enumerate(teachers, start=1)}
    else:
        raise ValueError("teachers must be a dict name -> model or a list of models")
    if not named:
        raise ValueError("give at least one teacher")
    for name, model in named.items():
        if not isinstance(model, nn.Module):
            raise ValueError(f"teacher {name!r} must be a torch module, got {type(model).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"teacher names must be non-empty strings without '.', got {name!r}")
    return named


def make_optimizer(parameters, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser ``fit`` uses: Adam, or SGD with momentum 0.9 (fused kernels on the CPU)."""
    check_choice("optimizer", name, OPTIMIZERS)
    parameters = list(parameters)
    options = {"fused": True} if _fused_on_cpu(parameters) else {}
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay, **options)
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay, **options)


def _fused_on_cpu(parameters) -> bool:
    """Use the optimisers' fused CPU kernels (torch >= 2.4) when every parameter is a float
    tensor on the CPU: one kernel for all the update arithmetic instead of a dozen small
    operations per parameter. For the workbook's small MLPs that is ~40% of a training step
    (measured: 10 epochs of the MLP student 0.71 s -> 0.40 s; the CNN ~8%)."""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    return version >= (2, 4) and all(p.device.type == "cpu" and p.is_floating_point() for p in parameters)


def _make_scheduler(opt, name, epochs):
    check_choice("schedule", name, SCHEDULES)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _epoch: 1.0)


def _copy_state(module: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _restore(modules: Sequence[nn.Module], states: Sequence[dict]) -> None:
    for module, state in zip(modules, states):
        module.load_state_dict(state)
