"""The exercises of notebook 07 (many teachers): the solutions pass, the usual mistakes are named,
and an exception in the learner's code comes back as feedback."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdkit.exercises import multi_teacher as exercises


def solution_function(number: int):
    namespace = {"torch": torch, "F": F}
    exec(exercises.solution(number), namespace)
    return namespace[{1: "mixture_target", 2: "confidence_weights"}[number]]


def test_the_solutions_pass():
    assert exercises.check_mixture_target(solution_function(1))
    assert exercises.check_confidence_weights(solution_function(2))


def test_mixture_target_mistakes_are_named():
    def unnormalised(zs, w, T):
        return sum(wj * torch.softmax(z.detach() / T, dim=1) for wj, z in zip(w, zs))

    def logit_average(zs, w, T):
        mean = sum(wj * z.detach() for wj, z in zip(w, zs)) / sum(w)
        return torch.softmax(mean / T, dim=1)

    def no_temperature(zs, w, T):
        return sum(wj * torch.softmax(z.detach(), dim=1) for wj, z in zip(w, zs)) / sum(w)

    def uniform(zs, w, T):
        return torch.stack([torch.softmax(z.detach() / T, dim=1) for z in zs]).mean(dim=0)

    def not_detached(zs, w, T):
        return sum(wj * torch.softmax(z / T, dim=1) for wj, z in zip(w, zs)) / sum(w)

    def crashes(zs, w, T):
        raise RuntimeError("shapes")

    assert "not normalised" in str(exercises.check_mixture_target(unnormalised))
    assert "geometric" in str(exercises.check_mixture_target(logit_average))
    assert "softened by T" in str(exercises.check_mixture_target(no_temperature))
    assert "ignored" in str(exercises.check_mixture_target(uniform))
    assert "detach" in str(exercises.check_mixture_target(not_detached))
    feedback = exercises.check_mixture_target(crashes)
    assert not feedback and "RuntimeError" in str(feedback)


def test_confidence_weight_mistakes_are_named():
    def transposed(zs, y):
        return torch.stack([torch.softmax(z.detach(), dim=1)[torch.arange(len(y)), y] for z in zs], dim=1)

    def hard(zs, y):
        return torch.stack([(z.argmax(dim=1) == y).double() for z in zs])

    def logits_of_the_label(zs, y):
        return torch.stack([z.detach()[torch.arange(len(y)), y] for z in zs])

    def not_detached(zs, y):
        return torch.stack([torch.softmax(z, dim=1)[torch.arange(len(y)), y] for z in zs])

    def max_probability(zs, y):
        return torch.stack([torch.softmax(z.detach(), dim=1).max(dim=1).values for z in zs])

    assert "transposed" in str(exercises.check_confidence_weights(transposed))
    assert "top class" in str(exercises.check_confidence_weights(hard))
    assert "softmax" in str(exercises.check_confidence_weights(logits_of_the_label))
    assert "detach" in str(exercises.check_confidence_weights(not_detached))
    assert not exercises.check_confidence_weights(max_probability)

    def not_answered(zs, y):
        raise NotImplementedError

    assert "not answered" in str(exercises.check_confidence_weights(not_answered))
