"""The tour of the kinds of knowledge's exercises. "Spot the bugs": the buggy snippet is
diagnosed with every one of its bugs, each fix is credited on its own, and the solution passes;
the similarity matrix: the solution passes and each usual mistake is named."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdkit.exercises import knowledge as exercises


def defined(source: str):
    namespace = {"torch": torch, "F": F, "nn": nn}
    exec(source, namespace)
    return namespace["distillation_loss"]


def still_there(feedback) -> set[str]:
    """The bugs a feedback message reports as still there (by their explanations' first words)."""
    text = str(feedback).split("Fixed already:")[0]
    return {name for name, why in exercises.BUGS.items() if why[:40] in text}


def test_the_buggy_snippet_has_every_bug_and_the_solution_none():
    feedback = exercises.check_fixed_snippet(defined(exercises.BUGGY_SNIPPET))
    assert not feedback and still_there(feedback) == set(exercises.BUGS)
    solved = exercises.check_fixed_snippet(defined(exercises.solution(1)))
    assert solved, str(solved)


FIXES = {
    "reduction": ("nn.KLDivLoss()", "nn.KLDivLoss(reduction='batchmean')"),
    "softmax dim": ("F.log_softmax(student_logits / T), F.softmax(teacher_logits / T))",
                    "F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1))"),
    "teacher gradient": ("teacher_logits = teacher(inputs)", "teacher_logits = teacher(inputs).detach()"),
    "train mode": ("    teacher_logits = teacher(inputs)", "    teacher.eval()\n    teacher_logits = teacher(inputs)"),
    "T squared": ("    return criterion(", "    return T**2 * criterion("),
}


@pytest.mark.parametrize("fixed", list(FIXES))
def test_each_fix_is_credited_and_the_other_bugs_still_named(fixed):
    old, new = FIXES[fixed]
    feedback = exercises.check_fixed_snippet(defined(exercises.BUGGY_SNIPPET.replace(old, new)))
    assert not feedback
    assert still_there(feedback) == set(exercises.BUGS) - {fixed}, str(feedback)
    assert fixed in str(feedback).split("Fixed already:")[1]


def test_labels_added_with_the_rest_fixed_but_no_T_squared():
    source = exercises.solution(1).replace(" * T**2", "")
    feedback = exercises.check_fixed_snippet(defined(source))
    assert still_there(feedback) == {"T squared"}, str(feedback)


def test_other_answers_get_a_clear_message():
    def detached(student, teacher, inputs, labels, T=4.0, alpha=0.9):
        return defined(exercises.solution(1))(student, teacher, inputs, labels, T, alpha).detach()

    def half(student, teacher, inputs, labels, T=4.0, alpha=0.9):
        return 0.5 * defined(exercises.solution(1))(student, teacher, inputs, labels, T, alpha)

    def crashes(*args):
        raise RuntimeError("shapes")

    assert "no gradient for the student" in str(exercises.check_fixed_snippet(detached))
    assert "none of the snippet's bugs" in str(exercises.check_fixed_snippet(half))
    assert "RuntimeError" in str(exercises.check_fixed_snippet(crashes))
    assert "not answered" in str(exercises.check_fixed_snippet(lambda *a: (_ for _ in ()).throw(NotImplementedError)))


def test_the_checker_leaves_the_learners_random_state_alone():
    state = torch.random.get_rng_state()
    exercises.check_fixed_snippet(defined(exercises.solution(1)))
    assert torch.equal(state, torch.random.get_rng_state())


# --------------------------------------------------------------------------------------
# Exercise 2: the similarity matrix
# --------------------------------------------------------------------------------------

def similarity_solution():
    namespace = {}
    exec(exercises.solution(2), {"torch": torch, "F": torch.nn.functional}, namespace)
    return namespace["similarity_matrix"]


def test_the_similarity_solution_passes_and_the_usual_mistakes_are_named():
    assert exercises.check_similarity_matrix(similarity_solution())
    mistakes = {
        "over the features": lambda f: f.flatten(1).t() @ f.flatten(1),
        "L2-normalised": lambda f: f.flatten(1) @ f.flatten(1).t(),
        "cosine similarity": lambda f: F.normalize(f.flatten(1), dim=1) @ F.normalize(f.flatten(1), dim=1).t(),
        "not the columns": lambda f: F.normalize(f.flatten(1) @ f.flatten(1).t(), dim=0),
        "flatten": lambda f: F.normalize(f @ f.transpose(0, 1), dim=1) if f.dim() == 2 else f[:, 0],
    }
    for expected, answer in mistakes.items():
        feedback = exercises.check_similarity_matrix(answer)
        assert not feedback and expected in feedback.message, (expected, feedback.message)
    assert "raised" in exercises.check_similarity_matrix(lambda f: 1 / 0).message
