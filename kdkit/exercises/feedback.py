"""What every checker returns, how it calls the learner's code safely, how it checks that a
learner's loss sends its gradient to the right tensor, and the two verdicts every notebook
shares: a prediction judged against a measured comparison, and a multiple-choice answer
about a plot."""
from __future__ import annotations

import html
import inspect
import warnings
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from kdkit.experiments.runs import Comparison

# Plain-text marks: an emoji mark shows as an empty box where no emoji font is installed.
CORRECT, NOT_YET = "[correct]", "[not yet]"
# In a notebook the HTML form is shown instead: a green check or a red cross (HTML entities).
_HTML_MARKS = {True: ('<span style="color:#1a7f37;font-weight:bold">&#10004;</span>'),
               False: ('<span style="color:#cf222e;font-weight:bold">&#10008;</span>')}

PREDICTIONS = ("higher", "lower", "no clear difference")


@dataclass(frozen=True)
class Feedback:
    """The checker's verdict: ``ok`` and a message that says what is right or off.

    Truthy when the answer is right; shown in a notebook as its message with a coloured mark.
    """
    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return (CORRECT if self.ok else NOT_YET) + " " + self.message

    def __str__(self) -> str:
        return repr(self)

    def _repr_html_(self) -> str:
        return f"<p>{_HTML_MARKS[self.ok]} {html.escape(self.message)}</p>"


def call_answer(fn: Callable, *args, **kwargs):
    """``fn(...)``, or the Feedback that explains why it could not be used.

    The learner's code may raise anything: it is reported, never allowed to crash the notebook.
    Warnings it triggers (PyTorch's about ``reduction="mean"``, for one) are kept inside the
    checker: the feedback names the mistake behind them.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*args, **kwargs)
    except NotImplementedError:
        return Feedback(False, "not answered yet: your function raises NotImplementedError")
    except Exception as error:  # noqa: BLE001 - any failure of the learner's code is feedback
        return Feedback(False, f"your function raised {error.__class__.__name__}: {error}")
    if out is None:
        return Feedback(False, "not answered yet: your function returned None")
    return out


# --------------------------------------------------------------------------------------
# Predict, then run: the answer is whatever the run measured
# --------------------------------------------------------------------------------------

def measured_outcome(comparison: Comparison) -> str:
    """"higher", "lower" or "no clear difference": where the 95% interval of the paired
    differences (treatment minus control) lies with respect to 0."""
    interval = comparison.difference
    if interval.low > 0:
        return "higher"
    if interval.high < 0:
        return "lower"
    return "no clear difference"


def check_prediction_against(prediction: str, comparison: Comparison, *, what: str) -> Feedback:
    """Was ``prediction`` what ``comparison`` measured? ``what`` names the two arms
    ("k = 4 against no bottleneck") in the message."""
    if prediction not in PREDICTIONS:
        return Feedback(False, f"answer with one of {', '.join(repr(p) for p in PREDICTIONS)}, "
                               f"got {prediction!r}")
    measured = measured_outcome(comparison)
    summary = (f"{what}: paired difference {comparison.difference.points()} points "
               f"(95% CI, n = {comparison.difference.n}), so '{measured}'")
    if prediction == measured:
        return Feedback(True, f"as you predicted: {summary}")
    return Feedback(False, f"not what you predicted: {summary}. Can you explain why?")


# --------------------------------------------------------------------------------------
# Read a plot: one letter, and the reason why it is the right one
# --------------------------------------------------------------------------------------

def check_choice(answer: str, choices: Mapping[str, str], right: str, why: str,
                 hints: Mapping[str, str]) -> Feedback:
    """A multiple-choice answer: ``answer`` must be the key ``right`` of ``choices``.

    The right answer is told ``why``; a wrong one is told what is off in it (``hints``),
    not which letter is right, so that it can think again.
    """
    answer = answer.strip().lower() if isinstance(answer, str) else answer
    if answer not in choices:
        return Feedback(False, f"answer with one letter of {', '.join(repr(c) for c in choices)}, "
                               f"got {answer!r}")
    if answer == right:
        return Feedback(True, f"({right}) is right. {why}")
    return Feedback(False, f"not ({answer}): {hints[answer]}")


READING_OF_OUTCOME = {"higher": "a", "lower": "b", "no clear difference": "c"}
"""Reading a comparison: (a) the treatment is higher, (b) the control is, (c) the seeds cannot tell."""


def check_comparison_reading(answer: str, comparison: Comparison, choices: Mapping[str, str], *,
                             difference: str, explanation: Mapping[str, str] | str = "",
                             interval: str | None = None) -> Feedback:
    """An exercise that reads a measured comparison: ``choices["a"]`` names the treatment,
    ``choices["b"]`` the control, ``choices["c"]`` "these seeds cannot tell"; the right letter is
    where the 95% interval of the paired differences lies with respect to 0.

    ``difference`` says what was subtracted ("stagewise minus labels"); ``interval`` is that
    interval as text (default: in accuracy points); ``explanation`` is added to the right answer's
    message (one text, or one per letter)."""
    right = READING_OF_OUTCOME[measured_outcome(comparison)]
    d = comparison.difference
    interval = interval or f"{d.points()} points (95% CI, n = {d.n})"
    extra = explanation.get(right, "") if isinstance(explanation, Mapping) else explanation
    why = f"{difference}, paired per seed: {interval}, so '{choices[right]}'." + (f" {extra}" if extra else "")
    look_again = ("look again at the interval of the paired differences, not at the two arms' error bars: where "
                  "does it lie with respect to 0?")
    hints = {letter: look_again for letter in choices}
    if right != "c":
        hints["c"] = "the paired interval does not contain 0: these seeds do tell the arms apart. Which way?"
    return check_choice(answer, choices, right, why, hints)


def solution_text(number: int, code: Mapping[int, tuple[Callable, str]], reasoning: Mapping[int, str], *,
                  notebook: str) -> str:
    """An exercise's solution: the source of its solution function, renamed to the name the
    notebook's exercise cell uses (``code[number] = (function, name)``), or the reasoning text."""
    if number in code:
        function, name = code[number]
        return inspect.getsource(function).replace(function.__name__, name)
    if number in reasoning:
        return reasoning[number]
    raise KeyError(f"{notebook} has exercises {sorted(code) + sorted(reasoning)}, not {number!r}")


def tensor_answer(fn: Callable, *args, **kwargs):
    """``fn(...)`` if it returns a tensor, else the Feedback that explains why not."""
    out = call_answer(fn, *args, **kwargs)
    if not isinstance(out, (torch.Tensor, Feedback)):
        return Feedback(False, f"your function must return a torch.Tensor, got {type(out).__name__}")
    return out


def tensors_close(a: torch.Tensor, b: torch.Tensor, *, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Same shape and equal within tolerance, compared in float64."""
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def gradient_problem(mine: torch.Tensor, reference: torch.Tensor, learner: torch.Tensor,
                     targets: list[torch.Tensor], *, learner_name: str, leak: Callable[[int], str],
                     close: Callable[[torch.Tensor, torch.Tensor], bool] = tensors_close) -> Feedback | None:
    """None when the learner's loss ``mine`` (whose value is already right) sends the gradient
    of ``reference`` to ``learner`` (called ``learner_name`` in the exercise) and none to the
    ``targets`` (a teacher's or a peer's logits: constants for this loss); else what is off.
    ``leak(j)`` says why target ``j`` must get no gradient."""
    if not mine.requires_grad:
        return Feedback(False, f"the value is right but your loss has no gradient: do not detach "
                               f"{learner_name} (or call .item()) inside the loss")
    grads = torch.autograd.grad(mine, [learner, *targets], allow_unused=True)
    for j, grad in enumerate(grads[1:]):
        if grad is not None and bool(grad.abs().max() > 0):
            return Feedback(False, f"the value is right, but {leak(j)}")
    expected = torch.autograd.grad(reference, learner)[0]
    if grads[0] is None or not close(grads[0], expected):
        return Feedback(False, f"the value is right but the gradient w.r.t. {learner_name} is not: "
                               f"is part of the loss computed from a detached copy of {learner_name}?")
    return None
