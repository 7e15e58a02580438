"""The exercises of notebook 05 (Be Your Own Teacher): the solutions pass, the usual mistakes are
named, and an exception in the learner's code comes back as feedback."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdkit.exercises import byot as exercises
from kdkit.experiments.runs import Comparison, Summary


def solution_function(number: int):
    namespace = {"torch": torch, "F": F}
    exec(exercises.solution(number), namespace)
    return namespace[{1: "exit_loss", 2: "exit_choice"}[number]]


def test_the_solutions_pass():
    assert exercises.check_exit_loss(solution_function(1))
    assert exercises.check_early_exit(solution_function(2))


def test_exit_loss_mistakes_are_named():
    def no_t_squared(z, zc, y, *, alpha, T):
        kl = F.kl_div(F.log_softmax(z / T, dim=1), F.softmax(zc.detach() / T, dim=1), reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * kl

    def not_detached(z, zc, y, *, alpha, T):
        kl = F.kl_div(F.log_softmax(z / T, dim=1), F.softmax(zc / T, dim=1), reduction="batchmean")
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * T * T * kl

    def mean_reduction(z, zc, y, *, alpha, T):
        kl = F.kl_div(F.log_softmax(z / T, dim=1), F.softmax(zc.detach() / T, dim=1), reduction="mean")
        return (1 - alpha) * F.cross_entropy(z, y) + alpha * T * T * kl

    def crashes(z, zc, y, *, alpha, T):
        raise RuntimeError("shapes")

    assert "T^2" in str(exercises.check_exit_loss(no_t_squared))
    assert "detach" in str(exercises.check_exit_loss(not_detached))
    assert "batchmean" in str(exercises.check_exit_loss(mean_reduction))
    feedback = exercises.check_exit_loss(crashes)
    assert not feedback and "RuntimeError" in str(feedback)


def test_early_exit_mistakes_are_named():
    def strict(probs, threshold):
        choice = torch.full((len(probs[0]),), len(probs) - 1)
        for i in reversed(range(len(probs) - 1)):
            choice[probs[i].max(dim=1).values > threshold] = i
        return choice

    def most_confident(probs, threshold):
        return torch.stack([p.max(dim=1).values for p in probs]).argmax(dim=0)

    def never_last(probs, threshold):
        choice = torch.zeros(len(probs[0]), dtype=torch.long)
        for i in reversed(range(len(probs) - 1)):
            choice[probs[i].max(dim=1).values >= threshold] = i
        return choice

    assert ">=" in str(exercises.check_early_exit(strict))
    assert "first" in str(exercises.check_early_exit(most_confident))
    assert "deepest" in str(exercises.check_early_exit(never_last))
    assert not exercises.check_early_exit(lambda probs, threshold: None)


def test_prediction_and_reading_follow_the_paired_interval():
    higher = Comparison("x", Summary((0.9, 0.91, 0.92)), Summary((0.88, 0.885, 0.9)))
    assert exercises.check_prediction("higher", higher)
    assert not exercises.check_prediction("lower", higher)
    assert exercises.check_reading("a", higher)
    assert not exercises.check_reading("c", higher)
    assert "letter" in str(exercises.check_reading("z", higher))
    assert "deep supervision" in exercises.solution(3) and "(a)" in exercises.solution(4)
