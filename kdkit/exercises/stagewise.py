"""Exercises for the notebook on Stagewise KD (Kulkarni et al. 2019), each with a checker.

1. :func:`check_stage_loss` - write one stage's loss: the mean squared error between the
   student's feature map and the teacher's, the teacher's map held constant;
2. :func:`check_freeze` - prepare a student so that one optimiser step moves only one stage:
   the other stages get no update *and* their batch-norm statistics stay where they are;
3. :func:`check_prediction` - predict, before the runs, whether stagewise KD beats the student
   trained on labels with a tenth of the data;
4. :func:`check_reading` - read the budget control: stagewise KD against labels given only one
   stage's epochs (the paper's budgets).

:func:`solution` returns the instructor's answer to an exercise by number. A checker returns a
:class:`Feedback`, truthy when the answer is right; a wrong answer, or an exception inside the
learner's function, is reported as feedback, never raised.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from kdkit.exercises.feedback import (Feedback, call_answer, check_comparison_reading, check_prediction_against,
                                      gradient_problem, solution_text, tensor_answer, tensors_close)
from kdkit.experiments.runs import Comparison
from kdkit.models import ResNet

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------
# Exercise 1: one stage's loss
# --------------------------------------------------------------------------------------

def reference_stage_loss(student_map: Tensor, teacher_map: Tensor) -> Tensor:
    """``mean over every element of (f_s - f_t)^2`` (the paper's ``nn.MSELoss()``), f_t constant."""
    return F.mse_loss(student_map, teacher_map.detach())


def _maps(seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (6, 4, 10)                                                 # (B, C, L)
    student = torch.relu(torch.randn(shape, generator=generator, dtype=torch.float64))
    teacher = torch.relu(torch.randn(shape, generator=generator, dtype=torch.float64))
    return student, teacher


def _stage_loss_variants(student: Tensor, teacher: Tensor) -> list[tuple[str, Tensor]]:
    """The usual wrong versions (float64), each with the mistake it makes."""
    diff = (student - teacher).detach()
    batch = diff.shape[0]
    return [
        ("you summed the squared errors instead of averaging them (reduction=\"sum\"): the loss then grows "
         "with the batch and the map's size. Adam would rescale its steps for one stage alone, but added to "
         "another term (the simultaneous loss) or trained with SGD, a sum weighs the big maps most",
         diff.pow(2).sum()),
        ("you averaged over the examples but summed over the channels and positions: the paper's "
         "nn.MSELoss() averages over every element", diff.pow(2).sum() / batch),
        ("the errors are not squared: that is the mean absolute error (L1), not the MSE", diff.abs().mean()),
        ("there is an extra factor 1/2 (FitNets writes 1/2 ||.||^2; the paper's code uses nn.MSELoss())",
         0.5 * diff.pow(2).mean()),
        ("that is the root of the MSE: drop the square root", diff.pow(2).mean().sqrt()),
    ]


def check_stage_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> Feedback:
    """Check ``fn(student_map, teacher_map)``: one stage's loss, a scalar, equal to
    :func:`reference_stage_loss` in value and gradient, with no gradient into the teacher's map."""
    for seed in (0, 1):
        student, teacher = _maps(seed)
        student.requires_grad_(True), teacher.requires_grad_(True)
        out = tensor_answer(fn, student, teacher)
        if isinstance(out, Feedback):
            return out
        if out.numel() != 1:
            return Feedback(False, f"return one number (a 0-d tensor), got shape {tuple(out.shape)}")
        out = out.reshape(())
        expected = reference_stage_loss(student, teacher)
        if not tensors_close(out, expected):
            for mistake, wrong in _stage_loss_variants(student, teacher):
                if tensors_close(out, wrong):
                    return Feedback(False, mistake + ".")
            return Feedback(False, f"your loss is {float(out):.5f}, the reference {float(expected):.5f}: the mean, "
                                   "over every element of the (B, C, L) maps, of the squared difference.")
        problem = gradient_problem(out, expected, student, [teacher], learner_name="student_map",
                                   leak=lambda _j: ("gradient flows into the teacher's map: detach it (the "
                                                    "teacher is trained already; here its maps are cached "
                                                    "constants, and a live teacher would be pulled towards "
                                                    "its student)"))
        if problem is not None:
            return problem
    return Feedback(True, "right: the mean over every element of (f_s - f_t)^2, the teacher's map a constant. "
                          "A mean does not grow with the batch or the map's size.")


# --------------------------------------------------------------------------------------
# Exercise 2: freeze every stage but one
# --------------------------------------------------------------------------------------

def _toy_student(seed: int = 0) -> ResNet:
    with torch.random.fork_rng(devices=[]):            # the learner's random state is left alone
        torch.manual_seed(seed)
        return ResNet((40,), 10, widths=(4, 8), blocks=(1, 1))


def _snapshot(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _moved(before: dict[str, Tensor], module: torch.nn.Module, *, buffers: bool) -> list[str]:
    names = {n for n, _ in module.named_buffers()} if buffers else {n for n, _ in module.named_parameters()}
    now = module.state_dict()
    return [n for n in names if "num_batches_tracked" not in n and not torch.equal(before[n], now[n])]


def check_freeze(fn: Callable[[ResNet, str], object]) -> Feedback:
    """Check ``fn(model, stage)``: it prepares ``model`` for training only ``model.stage_modules()[stage]``
    and returns the parameters to give the optimiser. The checker then takes one SGD step with
    them on a feature loss *without touching the modules' modes*: only ``stage`` may change,
    weights or batch-norm statistics."""
    stage = "stage1"
    model = _toy_student()
    parts = model.stage_modules()
    model.train()                                      # as a training loop leaves it before the step
    before = {name: _snapshot(part) for name, part in parts.items()}
    params = call_answer(fn, model, stage)
    if isinstance(params, Feedback):
        return params
    try:
        params = list(params)
    except TypeError:
        return Feedback(False, "return the parameters to optimise, e.g. list(stage.parameters())")
    if not params or not all(isinstance(p, torch.nn.Parameter) for p in params):
        return Feedback(False, "you returned no parameters (or something else): return the list of the "
                               "trained stage's parameters, for the optimiser")
    optimiser = torch.optim.SGD(params, lr=0.5)
    x = torch.randn(32, 40, generator=torch.Generator().manual_seed(1))
    try:
        _, features = model.forward_with_features(x)
        features[stage].pow(2).mean().backward()       # any loss on the stage's output will do
        optimiser.step()
    except Exception as error:                          # noqa: BLE001
        return Feedback(False, f"one training step failed after your preparation: {type(error).__name__}: {error}")
    return _diagnose_freeze(model, parts, before, stage)


def _diagnose_freeze(model, parts, before, stage) -> Feedback:
    for name, part in parts.items():
        if name == stage:
            continue
        if _moved(before[name], part, buffers=False):
            return Feedback(False, f"the weights of {name!r} changed: only {stage!r} may be updated (set "
                                   "requires_grad_(False) on the others, and give the optimiser only the stage's "
                                   "parameters)")
        if _moved(before[name], part, buffers=True):
            return Feedback(False, f"the batch-norm statistics of {name!r} moved although its weights did not: "
                                   "requires_grad_(False) does not stop batch norm from updating its running mean "
                                   "and variance in train mode. Put the frozen stages in eval mode (.eval()). This "
                                   "is what the paper's code does not do: its frozen stages drift.")
    trained = parts[stage]
    if not _moved(before[stage], trained, buffers=False):
        return Feedback(False, f"{stage!r} did not change: return its parameters and keep requires_grad on for them")
    if not trained.training:
        return Feedback(False, f"{stage!r} is in eval mode: the stage being trained must stay in train mode (its "
                               "batch norm normalises with the batch's statistics and updates its running ones)")
    if not _moved(before[stage], trained, buffers=True):
        return Feedback(False, f"the batch-norm statistics of {stage!r} did not move: keep the trained stage in "
                               "train mode")
    return Feedback(True, f"right: only {stage!r} moved, and the frozen stages kept their weights and their "
                          "batch-norm statistics. kdkit's fit(..., trainable=[stage]) does the same at every epoch.")


# --------------------------------------------------------------------------------------
# Exercises 3 and 4: predict a comparison, read a measurement
# --------------------------------------------------------------------------------------

def check_prediction(prediction: str, comparison: Comparison) -> Feedback:
    """Exercise 3: was the prediction ("higher", "lower", "no clear difference") for stagewise KD
    against the student on labels, with a tenth of the data, what was measured?"""
    return check_prediction_against(prediction, comparison,
                                    what="stagewise KD against the student trained on labels, a tenth of the data")


READING_CHOICES = {"a": "stagewise KD", "b": "labels given one stage's epochs", "c": "these seeds cannot tell"}


def check_reading(answer: str, comparison: Comparison) -> Feedback:
    """Exercise 4: in the budget control (stagewise KD, treatment, against labels given only one
    stage's epochs, control), which is higher, or can these seeds not tell?"""
    return check_comparison_reading(
        answer, comparison, READING_CHOICES, difference="stagewise minus labels with one stage's epochs",
        explanation="The paper gave every stage as many epochs as a baseline got in all; compare with C6.1, where "
                    "the label-only student could train as long as all the stages together.")


# --------------------------------------------------------------------------------------
# Solutions
# --------------------------------------------------------------------------------------

def _solution_1(student_map, teacher_map):
    return ((student_map - teacher_map.detach()) ** 2).mean()       # nn.MSELoss(): mean over B*C*L


def _solution_2(model, stage):
    parts = model.stage_modules()
    for name, part in parts.items():
        frozen = name != stage
        part.requires_grad_(not frozen)
        part.train(not frozen)                         # eval mode: batch norm keeps its statistics
    return list(parts[stage].parameters())


_CODE = {1: (_solution_1, "stage_loss"), 2: (_solution_2, "freeze_all_but")}

_REASONING = {
    3: ("How to reason: the student copies the teacher's maps one stage at a time, so it inherits features the "
        "teacher learned from all the data, which the label-only student cannot see. Against that: each stage "
        "only learns to copy, the labels reach nothing but the classifier, and an error in an early stage is "
        "frozen in before the next one starts. Which wins depends on how well each stage learns to copy: the "
        "repairs table shows how much that depends on the recipe. Then let the paired interval decide."),
    4: ("How to read it: each seed gives one difference, stagewise minus labels with as many epochs, same "
        "initial weights and batches. The 95% interval of those differences decides: entirely above 0 -> (a), "
        "entirely below 0 -> (b), containing 0 -> (c). If the label-only student gains from the extra epochs, "
        "part of a comparison at unequal budgets was the budget."),
}


def solution(number: int) -> str:
    """The instructor's solution to exercise ``number``: source code for a function, or text."""
    return solution_text(number, _CODE, _REASONING, notebook="the Stagewise KD notebook")
