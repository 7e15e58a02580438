"""Notebook 01, Ba & Caruana (2014), "Do Deep Nets Really Need to be Deep?", in miniature.

A shallow MLP (one wide hidden layer, optionally with a linear bottleneck) learns MNIST-1D
either from the labels or by regressing a CNN teacher's *logits* (L2, no labels) on the
labelled inputs plus a growing set of extra, unlabeled signals from the same generator
(the transfer set). Every run, plot and verdict of the notebook comes from this module, and
``tests/claims/test_ba_caruana_claims.py`` re-runs the same functions with the same seeds.

Recipe (chosen on the validation split, test never looked at; see the notebook):

* Adam, constant learning rate 0.03 for every arm. Grid {0.003, 0.01, 0.03} for the
  labelled-only arms and {0.01, 0.03, 0.1} for the transfer-set arms, 2 seeds, 100 resp.
  40 epochs: 0.03 was best or within 0.6 points of the best for every arm.
* Labelled set only (3,501 examples): batch 128, 60 epochs (later epochs moved the
  validation accuracy by 1-2 points, up or down).
* With a transfer set: batch 512 and a fixed budget of ``EXAMPLE_BUDGET`` example visits,
  i.e. ``epochs = EXAMPLE_BUDGET / len(train set)`` (17 epochs for 3,501 + 20,000 inputs).
  On validation the mimic was still improving at the end of every budget we could afford
  (about 4 points more at 40 epochs): these runs are compute-bound, not converged.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from kdkit.data import DataSplits, Split, concat_splits, load_mnist1d, mnist1d_transfer_set
from kdkit.experiments import mnist1d
from kdkit.experiments.runs import Comparison, RunResult, Summary, summarize
from kdkit.models import build_model, count_parameters
from kdkit.objectives import CrossEntropy, LogitMimic, SoftTargets
from kdkit.train import Callback, evaluate, fit, predict_logits, with_teacher_logits
from kdkit.validation import check_choice, check_positive_int

# The three ways to train the shallow student (the notebook's "loss" knob).
LOSSES = {
    "labels": "cross-entropy on the hard labels (the transfer set cannot be used: it has none)",
    "l2_logits": "L2 on the teacher's logits, 1/2 ||z_s - z_t||^2 (Ba & Caruana)",
    "soft_ce": "cross-entropy on the teacher's probabilities softmax(z_t), T = 1",
}
LOSS_CHOICES = (("L2 on logits (mimic)", "l2_logits"), ("soft CE on probabilities", "soft_ce"),
                ("labels (CE)", "labels"))

LR = 0.03
LABELLED_EPOCHS, LABELLED_BATCH = 60, 128
TRANSFER_BATCH = 512
EXAMPLE_BUDGET = 400_000     # example visits of a run with a transfer set (~1.5-2 s at width 512)
MAX_TRANSFER = 50_000        # the largest transfer set the notebook and its playground use
DEFAULT_WIDTH = 512
DEFAULT_TRANSFER = 20_000

SEEDS = tuple(range(5))                      # the claims that compare two arms
SWEEP_SEEDS = SEEDS                          # the sweeps use the same five seeds
TRANSFER_SIZES = (0, 5_000, 20_000, 50_000)
WIDTHS = (8, 32, 128, 512)
ENSEMBLE_SEEDS = (0, 1, 2)                   # teacher seeds averaged into the ensemble teacher


# --------------------------------------------------------------------------------------
# Data: labelled splits and a transfer set, both labelled by the teacher once
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MimicData:
    """MNIST-1D and an unlabeled transfer pool, with one teacher's logits cached on both.

    ``teacher_test_acc`` is the test accuracy of that teacher (for an ensemble: of its
    averaged logits). The teacher ran once over everything; no run calls it again.
    """
    data: DataSplits
    transfer: Split
    teacher_name: str
    teacher_test_acc: float

    def training_set(self, transfer_size: int) -> Split:
        """The labelled training inputs plus the first ``transfer_size`` transfer inputs."""
        transfer_size = check_transfer_size(transfer_size, len(self.transfer))
        if transfer_size == 0:
            return self.data.train
        return concat_splits(self.data.train, self.transfer.subset(torch.arange(transfer_size)))


def check_transfer_size(transfer_size: int, available: int = MAX_TRANSFER) -> int:
    check_positive_int("transfer_size", transfer_size, minimum=0)
    if transfer_size > available:
        raise ValueError(f"transfer_size must be at most {available:,} (the prepared transfer set), "
                         f"got {transfer_size:,}")
    return transfer_size


def teachers(data: DataSplits | None = None, seeds: Sequence[int] = (0,)) -> list:
    """The CNN teachers of :mod:`kdkit.experiments.mnist1d` for ``seeds`` (cached checkpoints)."""
    data = data if data is not None else load_mnist1d()
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one teacher seed")
    return [mnist1d.teacher(data, seed=s) for s in seeds]


def prepare(teacher_models: Sequence[torch.nn.Module], data: DataSplits | None = None, *,
            transfer_size: int = MAX_TRANSFER, name: str = "") -> MimicData:
    """Cache the teacher's logits (averaged over ``teacher_models``) on the data and transfer set."""
    data = data if data is not None else load_mnist1d()
    models = list(teacher_models)
    if not models:
        raise ValueError("give at least one teacher model")
    check_positive_int("transfer_size", transfer_size)
    labelled = with_teacher_logits(models, data)
    pool = mnist1d_transfer_set(transfer_size)
    pool = with_teacher_logits(models, pool)
    test_acc = float((labelled.test.teacher_logits.argmax(1) == labelled.test.y).float().mean())
    name = name or ("CNN teacher" if len(models) == 1 else f"ensemble of {len(models)} CNNs")
    return MimicData(labelled, pool, name, test_acc)


# --------------------------------------------------------------------------------------
# One student
# --------------------------------------------------------------------------------------

def epochs_for(train_size: int, transfer_size: int) -> int:
    """Epochs of a run: fixed for the labelled set alone, a fixed example budget otherwise."""
    if transfer_size == 0:
        return LABELLED_EPOCHS
    return max(1, round(EXAMPLE_BUDGET / train_size))


def shallow_student(data: DataSplits, *, width: int = DEFAULT_WIDTH, bottleneck: int = 0,
                    seed: int = 0) -> torch.nn.Module:
    """The shallow MLP input -> [k linear] -> width (ReLU) -> classes; ``bottleneck=0``: none."""
    width = check_positive_int("width", width)
    bottleneck = check_positive_int("bottleneck", bottleneck, minimum=0)
    return build_model("shallow_mlp", data.input_shape, data.num_classes, seed=seed, width=width,
                       bottleneck=bottleneck or None)


def objective_for(loss: str):
    check_choice("loss", loss, LOSSES)
    return {"labels": CrossEntropy(), "l2_logits": LogitMimic(), "soft_ce": SoftTargets(T=1.0)}[loss]


def student_run(prepared: MimicData, *, width: int = DEFAULT_WIDTH, bottleneck: int = 0,
                transfer_size: int = DEFAULT_TRANSFER, loss: str = "l2_logits", seed: int = 0,
                callbacks: Sequence[Callback] = ()) -> RunResult:
    """Train one shallow student; the same seed gives the same initial weights and batches.

    ``loss`` is one of :data:`LOSSES`. ``transfer_size`` unlabeled inputs labelled by the
    teacher are added to the 3,501 labelled ones (the teacher-based losses never read the
    labels); the ``"labels"`` loss can only use ``transfer_size=0``.
    """
    objective = objective_for(loss)
    check_positive_int("width", width)
    check_positive_int("bottleneck", bottleneck, minimum=0)
    transfer_size = check_transfer_size(transfer_size, len(prepared.transfer))
    if loss == "labels" and transfer_size > 0:
        raise ValueError("the labels loss needs labels, and the transfer set has none: "
                         "set transfer_size to 0 or pick a teacher-based loss")
    check_positive_int("seed", seed, minimum=0)
    model = shallow_student(prepared.data, width=width, bottleneck=bottleneck, seed=seed)
    train_split = prepared.training_set(transfer_size)
    epochs = epochs_for(len(train_split), transfer_size)
    batch_size = LABELLED_BATCH if transfer_size == 0 else TRANSFER_BATCH
    started = time.perf_counter()
    history = fit(model, train_split, prepared.data.val, objective=objective, epochs=epochs,
                  batch_size=batch_size, lr=LR, seed=seed, callbacks=callbacks)
    config = {"teacher": prepared.teacher_name, "width": width, "bottleneck": bottleneck,
              "transfer_size": transfer_size, "loss": loss, "seed": seed, "epochs": epochs,
              "batch_size": batch_size, "lr": LR, "parameters": count_parameters(model)}
    return RunResult(config=config, history=history, val_acc=history.last["val_acc"],
                     test_acc=evaluate(model, prepared.data.test)["acc"],
                     seconds=time.perf_counter() - started)


def parameter_count(input_dim: int, width: int, bottleneck: int = 0, num_classes: int = 10) -> int:
    """Parameters of the shallow net: ``[k*d] + (in*H + H) + (H*K + K)``, in = k or d."""
    first_in = bottleneck if bottleneck else input_dim
    return bottleneck * input_dim + first_in * width + width + width * num_classes + num_classes


# --------------------------------------------------------------------------------------
# Many students: every run trained once, remembered, and shared by the claims
# --------------------------------------------------------------------------------------

@dataclass
class Study:
    """The runs of the notebook on one or more prepared teachers, each trained at most once.

    ``study.runs("cnn", seeds, transfer_size=20_000)`` trains what is missing and returns
    the RunResults in seed order; the same setting asked for by two claims is shared.
    """
    teachers: dict[str, MimicData]
    results: dict[tuple, RunResult] = field(default_factory=dict)

    def run(self, teacher: str = "cnn", *, seed: int = 0, **settings) -> RunResult:
        check_choice("teacher", teacher, self.teachers)
        settings = {"width": DEFAULT_WIDTH, "bottleneck": 0, "transfer_size": DEFAULT_TRANSFER,
                    "loss": "l2_logits", **settings}
        key = (teacher, seed, tuple(sorted(settings.items())))
        if key not in self.results:
            self.results[key] = student_run(self.teachers[teacher], seed=seed, **settings)
        return self.results[key]

    def runs(self, teacher: str = "cnn", seeds: Sequence[int] = SEEDS, **settings) -> list[RunResult]:
        return [self.run(teacher, seed=s, **settings) for s in seeds]

    def summary(self, teacher: str = "cnn", seeds: Sequence[int] = SEEDS, **settings) -> Summary:
        return summarize(self.runs(teacher, seeds, **settings))


LABELS = {"loss": "labels", "transfer_size": 0}


def claim_mimic_beats_labels(study: Study, *, transfer_size: int, seeds: Sequence[int] = SEEDS) -> Comparison:
    """C1.1: L2 mimic (labelled inputs + ``transfer_size`` transfer inputs) vs labels."""
    where = "the labelled inputs only" if transfer_size == 0 else f"+ {transfer_size:,} unlabeled inputs"
    return Comparison(f"C1.1 L2 mimic ({where}) beats the same net trained on labels",
                      treatment=study.summary(seeds=seeds, transfer_size=transfer_size),
                      control=study.summary(seeds=seeds, **LABELS))


def transfer_sweep(study: Study, *, sizes: Sequence[int] = TRANSFER_SIZES,
                   seeds: Sequence[int] = SWEEP_SEEDS) -> dict[int, Summary]:
    """C1.2: test accuracy of the L2 mimic for each transfer-set size."""
    return {n: study.summary(seeds=seeds, transfer_size=n) for n in sizes}


def claim_more_transfer_helps(study: Study, *, sizes: Sequence[int] = TRANSFER_SIZES,
                              seeds: Sequence[int] = SWEEP_SEEDS) -> list[Comparison]:
    """C1.2, step by step: each larger transfer set vs the next smaller one."""
    sweep = transfer_sweep(study, sizes=sizes, seeds=seeds)
    return [Comparison(f"C1.2 {large:,} transfer inputs beat {small:,}", sweep[large], sweep[small])
            for small, large in zip(sizes, sizes[1:])]


def width_sweep(study: Study, *, widths: Sequence[int] = WIDTHS, seeds: Sequence[int] = SWEEP_SEEDS,
                transfer_size: int = DEFAULT_TRANSFER) -> dict[str, dict[int, list[RunResult]]]:
    """C1.3: label-trained and mimic students of growing width (the paper's figure)."""
    return {"labels": {w: study.runs(seeds=seeds, width=w, **LABELS) for w in widths},
            "mimic": {w: study.runs(seeds=seeds, width=w, transfer_size=transfer_size) for w in widths}}


def claim_mimic_gains_more_from_width(study: Study, *, widths: Sequence[int] = WIDTHS,
                                      seeds: Sequence[int] = SWEEP_SEEDS,
                                      transfer_size: int = DEFAULT_TRANSFER) -> Comparison:
    """C1.3: over the last width step, the mimic gains more test accuracy than the label net.

    Per seed, gain = acc(widest) - acc(second widest); the two arms' gains are compared
    like any two arms (same seeds, so the same initial weights within each width).
    """
    sweep = width_sweep(study, widths=widths, seeds=seeds, transfer_size=transfer_size)
    narrow, wide = widths[-2], widths[-1]

    def gains(arm):
        return Summary(tuple(b.test_acc - a.test_acc for a, b in zip(sweep[arm][narrow], sweep[arm][wide])))

    return Comparison(f"C1.3 from width {narrow} to {wide} the mimic gains more than the label net",
                      treatment=gains("mimic"), control=gains("labels"))


def claim_ensemble_teacher_helps(study: Study, *, seeds: Sequence[int] = SEEDS,
                                 transfer_size: int = DEFAULT_TRANSFER) -> Comparison:
    """C1.4: mimicking the ensemble's averaged logits vs mimicking one CNN."""
    return Comparison("C1.4 mimicking the ensemble beats mimicking one CNN",
                      treatment=study.summary("ensemble", seeds, transfer_size=transfer_size),
                      control=study.summary("cnn", seeds, transfer_size=transfer_size))


def claim_l2_beats_soft_ce(study: Study, *, seeds: Sequence[int] = SEEDS,
                           transfer_size: int = DEFAULT_TRANSFER) -> Comparison:
    """C1.5: L2 on logits vs cross-entropy on the teacher's probabilities (T = 1)."""
    return Comparison("C1.5 L2 on logits beats soft cross-entropy on probabilities",
                      treatment=study.summary(seeds=seeds, transfer_size=transfer_size),
                      control=study.summary(seeds=seeds, transfer_size=transfer_size, loss="soft_ce"))


def best_student(study: Study, *, min_seeds: int = 3) -> tuple[dict, Summary]:
    """The best setting among everything the study ran (mean test accuracy over >= min_seeds)."""
    groups: dict[tuple, list[RunResult]] = {}
    for (teacher, _seed, settings), result in study.results.items():
        groups.setdefault((teacher, settings), []).append(result)
    summaries = {key: summarize(runs) for key, runs in groups.items() if len(runs) >= min_seeds}
    if not summaries:
        raise ValueError(f"the study holds no setting run with >= {min_seeds} seeds yet")
    (teacher, settings), best = max(summaries.items(), key=lambda item: item[1].mean)
    return {"teacher": teacher, **dict(settings)}, best


def honest_limit(study: Study) -> dict:
    """Does the best shallow student measured reach the CNN teacher it copies?"""
    setting, best = best_student(study)
    teacher_acc = study.teachers["cnn"].teacher_test_acc
    return {"setting": setting, "student": best, "teacher_acc": teacher_acc,
            "gap": teacher_acc - best.mean, "below_teacher": best.mean + best.std < teacher_acc}


def all_comparisons(study: Study, *, seeds: Sequence[int] = SEEDS) -> list[Comparison]:
    """Every claim as a Comparison, in the notebook's order."""
    return [claim_mimic_beats_labels(study, transfer_size=0, seeds=seeds),
            claim_mimic_beats_labels(study, transfer_size=DEFAULT_TRANSFER, seeds=seeds),
            *claim_more_transfer_helps(study, seeds=seeds),
            claim_mimic_gains_more_from_width(study, seeds=seeds),
            claim_ensemble_teacher_helps(study, seeds=seeds),
            claim_l2_beats_soft_ce(study, seeds=seeds)]


def reproduce(seeds: int = len(SEEDS)) -> list[str]:
    """The notebook's claims over ``seeds`` seeds, as report lines (``python -m kdkit``)."""
    return [c.report() for c in all_comparisons(build_study(), seeds=tuple(range(seeds)))]


LIMIT_CLAIM = "Limit: the best shallow student stays below the CNN teacher (by more than its std)"


def all_verdicts(study: Study) -> list[tuple[str, str]]:
    """Each claim and its verdict, in the notebook's order (the claims test asserts these)."""
    lines = [(c.claim, c.verdict) for c in all_comparisons(study)]
    lines.append((LIMIT_CLAIM, "holds" if honest_limit(study)["below_teacher"] else "does not hold"))
    return lines


def ensemble_test_acc(teacher_models: Sequence[torch.nn.Module], split: Split) -> float:
    """Test accuracy of the averaged logits of several teachers."""
    logits = torch.stack([predict_logits(m, split.x) for m in teacher_models]).mean(dim=0)
    return float((logits.argmax(1) == split.y).float().mean())


def build_study(data: DataSplits | None = None, *, ensemble_seeds: Sequence[int] = ENSEMBLE_SEEDS,
                transfer_size: int = MAX_TRANSFER) -> Study:
    """The notebook's setup: the seed-0 CNN and the ensemble, each labelling the same transfer set."""
    data = data if data is not None else load_mnist1d()
    nets = [checkpoint.model for checkpoint in teachers(data, ensemble_seeds)]
    return Study({"cnn": prepare(nets[:1], data, transfer_size=transfer_size),
                  "ensemble": prepare(nets, data, transfer_size=transfer_size)})


# --------------------------------------------------------------------------------------
# The playground and the figures of the notebook
# --------------------------------------------------------------------------------------

def playground_run(study: Study):
    """``run(teacher, width, bottleneck, transfer_size, loss, seed, callbacks)`` for ExperimentPanel.

    ``teacher`` names one of the study's prepared teachers ("cnn" or "ensemble"); every
    other argument goes to :func:`student_run`. Runs are not shared with the study's cache:
    the panel keeps its own.
    """
    def run(teacher: str = "cnn", callbacks: Sequence[Callback] = (), **settings) -> RunResult:
        check_choice("teacher", teacher, study.teachers)
        return student_run(study.teachers[teacher], callbacks=callbacks, **settings)
    return run


def _errorbar(ax, xs, summaries, **style):
    ax.errorbar(xs, [100 * s.mean for s in summaries], yerr=[100 * s.std for s in summaries],
                capsize=3, marker="o", **style)


def plot_width_sweep(sweep: dict[str, dict[int, list[RunResult]]], *, teacher_acc: float):
    """Test accuracy vs number of parameters, label-trained vs mimic (Ba & Caruana's figure)."""
    from kdkit.viz import new_figure

    fig = new_figure(6.0, 3.4)
    ax = fig.add_subplot()
    names = {"labels": "shallow net, trained on labels", "mimic": "shallow net, L2 mimic (+ transfer set)"}
    for index, (arm, by_width) in enumerate(sweep.items()):
        widths = sorted(by_width)
        params = [by_width[w][0].config["parameters"] for w in widths]
        _errorbar(ax, params, [summarize(by_width[w]) for w in widths], color=f"C{index}", label=names[arm])
        for w, p, runs in zip(widths, params, (by_width[w] for w in widths)):
            if arm == "mimic":
                ax.annotate(f"H={w}", (p, 100 * summarize(runs).mean), textcoords="offset points",
                            xytext=(-8, 8), fontsize=8, color="0.35")
    ax.axhline(100 * teacher_acc, color="C3", linestyle="--", linewidth=1, label="CNN teacher")
    ax.set_xscale("log")
    ax.set_xlabel("number of parameters of the student (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_transfer_sweep(sweep: dict[int, Summary], *, labels: Summary, teacher_acc: float):
    """Test accuracy of the L2 mimic vs the number of unlabeled transfer inputs."""
    from kdkit.viz import new_figure

    fig = new_figure(6.0, 3.2)
    ax = fig.add_subplot()
    sizes = sorted(sweep)
    positions = range(len(sizes))  # equally spaced: 0 does not fit on a log axis
    _errorbar(ax, list(positions), [sweep[n] for n in sizes], color="C1", label="L2 mimic")
    ax.axhline(100 * labels.mean, color="C0", linestyle=":", label="same net on labels")
    ax.axhline(100 * teacher_acc, color="C3", linestyle="--", linewidth=1, label="CNN teacher")
    ax.set_xticks(list(positions), [f"{n:,}" for n in sizes])
    ax.set_xlabel("unlabeled transfer inputs added to the 3,501 labelled ones")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
