"""The exercises of notebook 06 (Stagewise KD): the solutions pass, the usual mistakes are named,
and an exception in the learner's code comes back as feedback."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdkit.exercises import stagewise as exercises


def solution_function(number: int):
    namespace = {"torch": torch, "F": F}
    exec(exercises.solution(number), namespace)
    return namespace[{1: "stage_loss", 2: "freeze_all_but"}[number]]


def test_the_solutions_pass():
    assert exercises.check_stage_loss(solution_function(1))
    assert exercises.check_freeze(solution_function(2))


def test_stage_loss_mistakes_are_named():
    def summed(s, t):
        return F.mse_loss(s, t.detach(), reduction="sum")

    def per_example(s, t):
        return (s - t.detach()).pow(2).flatten(1).sum(dim=1).mean()

    def not_detached(s, t):
        return F.mse_loss(s, t)

    def l1(s, t):
        return (s - t.detach()).abs().mean()

    def crashes(s, t):
        raise RuntimeError("shapes")

    assert "reduction=\"sum\"" in str(exercises.check_stage_loss(summed))
    assert "averaged over the examples but summed" in str(exercises.check_stage_loss(per_example))
    assert "detach" in str(exercises.check_stage_loss(not_detached))
    assert "L1" in str(exercises.check_stage_loss(l1))
    feedback = exercises.check_stage_loss(crashes)
    assert not feedback and "RuntimeError" in str(feedback)


def test_freeze_mistakes_are_named():
    def requires_grad_only(model, stage):            # the paper's code: batch norm keeps drifting
        for name, part in model.stage_modules().items():
            part.requires_grad_(name == stage)
        return list(model.stage_modules()[stage].parameters())

    def everything(model, stage):
        return list(model.parameters())

    def stage_in_eval(model, stage):
        for name, part in model.stage_modules().items():
            part.requires_grad_(name == stage)
            part.eval()
        return list(model.stage_modules()[stage].parameters())

    def wrong_stage(model, stage):
        parts = model.stage_modules()
        for name, part in parts.items():
            part.requires_grad_(name == "stem")
            part.train(name == "stem")
        return list(parts["stem"].parameters())

    assert "batch-norm statistics" in str(exercises.check_freeze(requires_grad_only))
    assert "weights of" in str(exercises.check_freeze(everything))
    assert "eval mode" in str(exercises.check_freeze(stage_in_eval))
    assert not exercises.check_freeze(wrong_stage)
    assert "no parameters" in str(exercises.check_freeze(lambda model, stage: []))

    def not_answered(model, stage):
        raise NotImplementedError

    assert "not answered" in str(exercises.check_freeze(not_answered))


def test_freeze_checker_leaves_the_learners_random_state_alone():
    state = torch.random.get_rng_state()
    exercises.check_freeze(solution_function(2))
    assert torch.equal(state, torch.random.get_rng_state())
