"""Every exercise's official solution passes its own checker (a checker that rejects it is a bug),
and a checker's verdict is shown with plain-text marks and, in a notebook, a coloured HTML mark.

Solutions are code: ``solution(n)`` returns the source of the function the exercise asks for, or,
for an exercise answered by a measurement, the line that sets ``my_prediction`` / ``my_answer``.
Measured exercises are tried against made-up results of every possible outcome.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kdkit.exercises import ba_caruana as ex01
from kdkit.exercises import hinton as ex02
from kdkit.exercises import knowledge as ex08
from kdkit.exercises import multi_teacher as ex07
from kdkit.exercises import stagewise as ex06
from kdkit.exercises import start_here as ex00
from kdkit.exercises.feedback import Feedback
from kdkit.experiments.hinton import OmittedClass, OmittedRun
from kdkit.experiments.runs import Comparison, RunResult, Summary
from kdkit.train import History

SEEDS = (100, 101, 102, 103, 104)
OUTCOMES = {"higher": (0.02, 0.03, 0.025, 0.02, 0.03), "lower": (-0.02, -0.03, -0.025, -0.02, -0.03),
            "no clear difference": (0.02, -0.03, 0.01, -0.01, 0.0)}


def run_solution(source: str) -> dict:
    """Execute a solution as a notebook cell would, and return what it defined."""
    namespace = {"F": F, "torch": torch}
    exec(source, namespace)
    return namespace


def the_function(source: str):
    namespace = run_solution(source)
    return next(v for k, v in namespace.items() if k.startswith(("my_", "exercise_")) and callable(v))


def comparison(differences, claim="treatment against control") -> Comparison:
    control = Summary(tuple(0.6 + 0.01 * i for i in range(len(differences))), SEEDS)
    treatment = Summary(tuple(c + d for c, d in zip(control.values, differences)), SEEDS)
    return Comparison(claim, treatment, control)


# --------------------------------------------------------------------------------------
# Notebook 00
# --------------------------------------------------------------------------------------

def test_notebook_00_solutions_pass_their_checkers():
    assert ex00.check_soft_targets(the_function(ex00.solution(1)))
    measured = comparison(OUTCOMES[ex00.ANSWER_2])
    assert ex00.ANSWER_2 in ex00.solution(2)
    assert ex00.check_prediction(ex00.ANSWER_2, measured)


# --------------------------------------------------------------------------------------
# Notebook 01
# --------------------------------------------------------------------------------------

def width_sweep(mimic_128_minus_labels_512) -> dict:
    """A made-up width sweep in which the mimic at 128 differs from the labels at 512 as given."""
    def runs(accuracies, parameters):
        return [RunResult({"seed": s, "parameters": parameters}, History([]), a, a, 0.0)
                for s, a in zip(SEEDS, accuracies)]

    labels_512 = [0.64 + 0.01 * i for i in range(len(SEEDS))]
    mimic_128 = [a + d for a, d in zip(labels_512, mimic_128_minus_labels_512)]
    return {"labels": {128: runs([0.62] * 5, 6_538), 512: runs(labels_512, 26_122)},
            "mimic": {128: runs(mimic_128, 6_538), 512: runs([0.76] * 5, 26_122)}}


def test_notebook_01_code_solutions_pass_their_checkers():
    assert ex01.check_logit_l2_loss(the_function(ex01.solution(1)))
    assert ex01.check_parameter_count(the_function(ex01.solution(2)))


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_notebook_01_prediction_solution_follows_the_measurement(outcome):
    measured = comparison(OUTCOMES[outcome], "a bottleneck of k = 16 beats no bottleneck")
    answer = run_solution(ex01.solution(3, measured))["my_prediction"]
    assert answer == outcome and ex01.check_bottleneck_prediction(answer, measured)


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_notebook_01_plot_solution_follows_the_plotted_runs(outcome):
    sweep = width_sweep(OUTCOMES[outcome])
    answer = run_solution(ex01.solution(4, sweep))["my_answer"]
    assert ex01.check_width_plot(answer, sweep)


# --------------------------------------------------------------------------------------
# Notebook 02
# --------------------------------------------------------------------------------------

def omitted_result(kd_after=0.6, labels_after=0.001) -> OmittedClass:
    def runs(before, after, bias):
        return [OmittedRun(seed=s, bias=bias, class_acc_before=before, class_acc_after=after + 0.01 * i,
                           other_acc_before=0.65, other_acc_after=0.64, test_acc_before=0.6,
                           test_acc_after=0.63, test_errors_before=400, test_errors_after=370)
                for i, s in enumerate(SEEDS)]

    return OmittedClass(3, runs(0.12, kd_after, 6.0), runs(0.0, labels_after, 2.0))


def test_notebook_02_code_solutions_pass_their_checkers():
    assert ex02.check_kd_loss(the_function(ex02.solution(1)))
    assert ex02.check_soft_gradient(the_function(ex02.solution(2)))
    assert ex02.check_choose_bias(the_function(ex02.solution(3)))


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_notebook_02_prediction_solution_follows_the_measurement(outcome):
    measured = comparison(OUTCOMES[outcome], "a 10-unit student at T = 2 beats T = 8")
    answer = run_solution(ex02.solution(4, measured))["my_prediction"]
    assert answer == outcome and ex02.check_tiny_student_prediction(answer, measured)


@pytest.mark.parametrize("kd_after, labels_after", [(0.6, 0.001), (0.1, 0.2)])
def test_notebook_02_plot_solution_passes_and_quotes_the_plotted_numbers(kd_after, labels_after):
    omitted = omitted_result(kd_after, labels_after)
    answer = run_solution(ex02.solution(5, omitted))["my_answer"]
    feedback = ex02.check_omitted_class_plot(answer, omitted)
    assert feedback and str(omitted.summary("kd", "class_acc_after")) in feedback.message
    assert ("did not help the KD student more" in feedback.message) == (kd_after <= labels_after)


# --------------------------------------------------------------------------------------
# Notebooks 06, 07 and 08: predict, then read a measured comparison
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [ex06, ex07, ex08])
def test_prediction_and_reading_follow_the_paired_interval(module):
    higher, lower, unclear = (comparison(OUTCOMES[o]) for o in ("higher", "lower", "no clear difference"))
    assert module.check_prediction("higher", higher) and not module.check_prediction("lower", higher)
    assert module.check_prediction("no clear difference", unclear)
    assert module.check_reading("a", higher) and module.check_reading("b", lower)
    assert module.check_reading("c", unclear) and not module.check_reading("a", unclear)
    for number in (3, 4):
        assert "How to" in module.solution(number)


# --------------------------------------------------------------------------------------
# Every module: every exercise has a solution, and an unknown number is refused
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, numbers", [(ex00, (1, 2)), (ex01, (1, 2, 3, 4)), (ex02, (1, 2, 3, 4, 5)),
                                             (ex06, (1, 2, 3, 4)), (ex07, (1, 2, 3, 4)), (ex08, (1, 2, 3, 4))])
def test_every_exercise_has_a_solution(module, numbers):
    for number in numbers:
        assert isinstance(module.solution(number), str) and module.solution(number)
    with pytest.raises(KeyError, match="exercises"):
        module.solution(max(numbers) + 1)


# --------------------------------------------------------------------------------------
# How a verdict is shown
# --------------------------------------------------------------------------------------

def test_feedback_is_shown_with_plain_text_marks_and_a_coloured_html_mark():
    right, wrong = Feedback(True, "fine"), Feedback(False, "a <b> & c")
    assert str(right) == repr(right) == "[correct] fine"
    assert str(wrong) == "[not yet] a <b> & c"
    assert "&#10004;" in right._repr_html_() and "#1a7f37" in right._repr_html_()
    assert "&#10008;" in wrong._repr_html_() and "a &lt;b&gt; &amp; c" in wrong._repr_html_()
    assert not any(ord(ch) > 0x2000 for ch in str(right) + str(wrong))   # no emoji, no box without a font
