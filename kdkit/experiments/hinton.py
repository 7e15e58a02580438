"""Notebook 02: Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

The paper's claims, in miniature on MNIST-1D (CNN teacher, MLP student 40-100-100-10):

* C2.1 a KD student beats the label-only student (:func:`kdkit.experiments.start_here.kd_versus_labels`);
* C2.2 the best temperature is above 1: T is chosen on validation with tuning seeds
  (:func:`temperature_sweep`), then the chosen T is run against T = 1 on test with
  reporting seeds (:func:`temperature_versus_one`);
* C2.3 without the ``T**2`` factor the soft term's gradient shrinks like ``1/T**2``
  (:func:`soft_gradient_norms`, :func:`loglog_slope`);
* C2.4 at high T the KD gradient approaches the gradient of squared error on centred
  logits (:func:`high_temperature_gap`);
* C2.5 with a few percent of the training set, soft targets beat hard labels, against an
  early-stopped hard-label baseline as in the paper, and close most of the gap to
  full-data training (:func:`small_data`);
* C2.6 a student that never saw one digit, its bias corrected on validation data, beats the
  label-only student that never saw it either (:func:`omitted_class`);
* C2.7 the speech experiment in miniature: an ensemble of label-trained students distilled
  into one student of the same architecture keeps most of the ensemble's gain
  (:func:`ensemble_distillation`).

``alpha`` is the weight of the distillation term throughout (alpha = 0: labels only).
Every choice (T, alpha, the bias, the early-stopping epoch) is made on the validation
split; settings are chosen with :data:`TUNING_SEEDS` and verdicts are reported on
last-epoch test accuracy with :data:`REPORTING_SEEDS` (disjoint), paired: both arms of a
seed start from the same weights and see the same batches (see :mod:`kdkit.experiments.runs`).
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from kdkit import losses
from kdkit.data import DataSplits, Split, stratified_fraction, without_classes
from kdkit.experiments import parallel, start_here
from kdkit.experiments.mnist1d import STUDENT_RECIPE, train_student, trained_on_labels
from kdkit.experiments.result_cache import cached, cached_run, data_fingerprint
from kdkit.experiments.runs import Comparison, Interval, RunResult, Summary, summarize
from kdkit.models import build_model
from kdkit.objectives import CrossEntropy, Distillation
from kdkit.train import Callback, evaluate, fit, predict_logits, with_teacher_logits
from kdkit.validation import check_fraction, check_positive, check_positive_int, check_unit_interval

# The paper's headline numbers (arXiv 1503.02531): errors on the 10,000 MNIST test images
# (section 3), frame accuracy and word error rate for speech (section 4, Table 1; section 6, Table 5).
PAPER = {
    "mnist_teacher_errors": 67,            # 1200-1200 net, dropout, jittered inputs
    "mnist_student_errors_labels": 146,    # 800-800 net, labels only
    "mnist_student_errors_kd": 74,         # 800-800 net, soft targets at T = 20
    "speech_baseline_acc": 0.589,          # Table 1: one model trained on labels (WER 10.9%)
    "speech_ensemble_acc": 0.611,          # Table 1: ensemble of 10 such models (WER 10.7%)
    "speech_distilled_acc": 0.608,         # Table 1: one model distilled from the ensemble (WER 10.7%)
    "speech_baseline_wer": 0.109,
    "speech_ensemble_wer": 0.107,
    "speech_distilled_wer": 0.107,
    "speech_ensemble_members": 10,
    "speech_3pct_hard_acc": 0.445,         # Table 5: 3% of the data, hard labels (early-stopped)
    "speech_3pct_soft_acc": 0.570,         # Table 5: 3% of the data, soft targets (no early stopping)
    "speech_full_hard_acc": 0.589,         # Table 5: 100% of the data, hard labels
    "omitted_3_errors_before": 206,        # transfer set without any 3 (133 of them on 3s)
    "omitted_3_errors_after": 109,         # after raising the bias of the 3 by 3.5 (14 on 3s)
}


def paper_share(low: float, high: float, middle: float) -> float:
    """The share of the way from ``low`` to ``high`` that ``middle`` covers."""
    return (middle - low) / (high - low)


PAPER_ENSEMBLE_SHARE = paper_share(PAPER["speech_baseline_acc"], PAPER["speech_ensemble_acc"],
                                   PAPER["speech_distilled_acc"])        # 1.9 / 2.2 = 0.86
PAPER_SMALL_DATA_SHARE = paper_share(PAPER["speech_3pct_hard_acc"], PAPER["speech_full_hard_acc"],
                                     PAPER["speech_3pct_soft_acc"])      # 12.5 / 14.4 = 0.87

DEFAULT_T = start_here.DEFAULT_T           # chosen on validation in notebook 00 (T = 8)
DEFAULT_ALPHA = start_here.DEFAULT_ALPHA   # (alpha = 0.9)
TUNING_SEEDS = range(0, 4)                 # settings are chosen on validation with these seeds
REPORTING_SEEDS = start_here.REPORTING_SEEDS   # range(100, 108): verdicts, on test, disjoint from them
SMALL_DATA_FRACTION = 0.05                 # Hinton used 3% of 2,000 hours of speech; 3% of our
                                           # 3,500 signals is only ~10 per class, so we use 5%
OMITTED_CLASS = 3                          # Hinton omitted the digit 3
SWEEP_TEMPERATURES = (1, 2, 4, 8, 16)      # the T grid of C2.2 (and of the small-data soft targets)
SWEEP_SEEDS = TUNING_SEEDS
SWEEP_ALPHAS = (0.0, 0.25, 0.9, 1.0)       # the alpha sweep, at T = DEFAULT_T (no claim attached: 3 tuning
ALPHA_SWEEP_SEEDS = range(3)               # seeds, to stay inside the notebook's time budget; alpha = 0.9
                                           # reuses the T sweep's runs)
BIAS_GRID = tuple(0.5 * i for i in range(0, 31))   # 0, 0.5, ..., 15 added to one logit
ENSEMBLE_MEMBER_SEEDS = range(10, 15)      # five label-trained students averaged (the paper: ten)
# Chosen by choose_ensemble_settings() on validation with seeds 0-2: best mean validation accuracy
# 68.5% at T = 32, alpha = 0.9 (runner-up T = 8, alpha = 0.9: 66.9%; at T = 2 at most 63.9%). The
# members fit their training set perfectly, so their averaged outputs there are nearly one-hot:
# only a very high T brings out the little dark knowledge they hold. T = 32 is the grid's edge.
ENSEMBLE_T = 32.0
ENSEMBLE_ALPHA = 0.9
ENSEMBLE_GRID = {"temperatures": (2, 8, 32), "alphas": (0.5, 0.9), "seeds": range(3)}
MOST = 0.5                                 # "closes most of the gap": more than half of it
PAPER_KEPT = 0.8                           # "more than 80% of the improvement ... is transferred"


# --------------------------------------------------------------------------------------
# One student run (the playground's run function)
# --------------------------------------------------------------------------------------

def student_run(data: DataSplits, *, T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA,
                width: int = STUDENT_RECIPE["hidden"][0], fraction: float = 1.0, seed: int = 0,
                callbacks: Sequence[Callback] = ()) -> RunResult:
    """One MLP student 40-width-width-10 trained on a stratified ``fraction`` of ``data.train``.

    ``alpha = 0`` is plain label training (T is then unused). The subset of the training
    set is fixed by ``seed`` too, so both arms of a comparison see the same examples.
    ``data`` must carry the teacher's logits (:func:`kdkit.experiments.mnist1d.data_with_teacher`).
    """
    T = check_positive("temperature T", T)
    alpha = check_unit_interval("alpha", alpha)
    width = check_positive_int("width (hidden units)", width)
    fraction = check_fraction("data fraction", fraction)
    seed = check_positive_int("seed", seed, minimum=0)
    objective = CrossEntropy() if alpha == 0 else Distillation(T=T, alpha=alpha)
    if fraction < 1.0:
        data = data.replace(train=stratified_fraction(data.train, fraction, seed=seed))
    result = train_student(data, objective, seed=seed, hidden=(width, width), callbacks=callbacks)
    result.config.update({"fraction": fraction, "train_size": len(data.train)})
    return result


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one seed")
    for seed in seeds:
        check_positive_int("seed", seed, minimum=0)
    return seeds


def _check_values(name: str, values: Sequence[float], check) -> tuple[float, ...]:
    values = tuple(values)
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one value")
    return tuple(check(name, v) for v in values)


# --------------------------------------------------------------------------------------
# C2.3 and C2.4: gradients, measured on random logits (deterministic, no training)
# --------------------------------------------------------------------------------------

def random_logit_pair(*, batch: int = 256, classes: int = 10, scale: float = 2.0,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits (B, K) drawn from N(0, scale^2), in float64."""
    batch = check_positive_int("batch", batch)
    classes = check_positive_int("classes", classes, minimum=2)
    scale = check_positive("scale", scale)
    generator = torch.Generator().manual_seed(seed)
    z_s = scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    z_t = scale * torch.randn(batch, classes, generator=generator, dtype=torch.float64)
    return z_s, z_t


def soft_gradient(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, T: float,
                  with_T2: bool = True) -> torch.Tensor:
    """Gradient (B, K) of the soft term ``[T^2] KL(p_t^T || p_s^T)`` w.r.t. the student's logits."""
    z_s = student_logits.detach().clone().requires_grad_(True)
    loss = losses.distillation_kl(z_s, teacher_logits, T=T)        # includes T^2
    if not with_T2:
        loss = loss / (T * T)
    return torch.autograd.grad(loss, z_s)[0]


def soft_gradient_norms(temperatures: Sequence[float], *, with_T2: bool,
                        student_logits: torch.Tensor | None = None,
                        teacher_logits: torch.Tensor | None = None) -> dict[float, float]:
    """Frobenius norm of the soft term's gradient at each temperature (C2.3).

    Without ``T^2`` the norm falls like ``1/T^2`` once T is well above the logits' spread;
    with it, the norm levels off. Random logits (:func:`random_logit_pair`) unless given.
    """
    temperatures = _check_values("temperatures", temperatures, check_positive)
    if student_logits is None or teacher_logits is None:
        student_logits, teacher_logits = random_logit_pair()
    return {T: float(soft_gradient(student_logits, teacher_logits, T=T, with_T2=with_T2).norm())
            for T in temperatures}


def loglog_slope(norms: dict[float, float]) -> float:
    """Least-squares slope of log(norm) against log(T): -2 means "falls like 1/T^2"."""
    if len(norms) < 2:
        raise ValueError("need norms at two or more temperatures to fit a slope")
    log_t = torch.log(torch.tensor(list(norms.keys()), dtype=torch.float64))
    log_n = torch.log(torch.tensor(list(norms.values()), dtype=torch.float64))
    log_t, log_n = log_t - log_t.mean(), log_n - log_n.mean()
    return float((log_t * log_n).sum() / (log_t * log_t).sum())


def high_temperature_gap(temperatures: Sequence[float], *, student_logits: torch.Tensor | None = None,
                         teacher_logits: torch.Tensor | None = None) -> dict[float, float]:
    """Relative difference between the gradients of ``T^2 KL`` and of centred-logit MSE (C2.4).

    ``||g_KD(T) - g_MSE|| / ||g_MSE||``: it shrinks towards 0 (like 1/T) as T grows, because
    ``T (p_s^T - p_t^T) -> (centred z_s - centred z_t) / K`` (Hinton et al. 2015, section 2.1).
    """
    temperatures = _check_values("temperatures", temperatures, check_positive)
    if student_logits is None or teacher_logits is None:
        student_logits, teacher_logits = random_logit_pair()
    z_s = student_logits.detach().clone().requires_grad_(True)
    g_mse = torch.autograd.grad(losses.centred_logit_mse(z_s, teacher_logits), z_s)[0]
    gaps = {}
    for T in temperatures:
        g_kd = soft_gradient(student_logits, teacher_logits, T=T, with_T2=True)
        gaps[T] = float((g_kd - g_mse).norm() / g_mse.norm())
    return gaps



# --------------------------------------------------------------------------------------
# C2.2: sweeps over T and alpha on validation (tuning seeds), then the chosen T on test
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sweep:
    """One hyper-parameter swept over values; each value's validation and test summaries."""
    name: str
    val: dict[float, Summary]
    test: dict[float, Summary]
    runs: dict[float, list[RunResult]]

    @property
    def best(self) -> float:
        """The value with the highest mean *validation* accuracy (test is not looked at)."""
        return max(self.val, key=lambda v: self.val[v].mean)

    def table(self) -> str:
        """Mean ± std validation accuracy per value (the test column is left out on purpose:
        a sweep is for choosing, and choices look at validation only)."""
        seeds = len(next(iter(self.runs.values())))
        rows = [f"{self.name:>6}   validation ({seeds} tuning seeds)"]
        for value in self.val:
            mark = "  <- best on validation" if value == self.best else ""
            rows.append(f"{value:>6g}   {self.val[value]!s:>12}{mark}")
        return "\n".join(rows)


def _sweep(name: str, runs: dict[float, list[RunResult]]) -> Sweep:
    return Sweep(name, val={v: summarize(r, "val_acc") for v, r in runs.items()},
                 test={v: summarize(r, "test_acc") for v, r in runs.items()}, runs=runs)


def temperature_sweep(data: DataSplits, *, temperatures: Sequence[float] = SWEEP_TEMPERATURES,
                      alpha: float = DEFAULT_ALPHA, seeds: Sequence[int] = SWEEP_SEEDS,
                      fraction: float = 1.0) -> Sweep:
    """Students at several T (fixed alpha) on the tuning seeds, scored on validation (C2.2)."""
    temperatures = _check_values("temperatures", temperatures, check_positive)
    alpha = check_unit_interval("alpha", alpha)
    fraction = check_fraction("data fraction", fraction)
    seeds = _check_seeds(seeds)
    runs = parallel.run_all([functools.partial(student_run, data, T=T, alpha=alpha, fraction=fraction, seed=s)
                             for T in temperatures for s in seeds])
    return _sweep("T", {T: runs[i * len(seeds):(i + 1) * len(seeds)] for i, T in enumerate(temperatures)})


def alpha_sweep(data: DataSplits, *, alphas: Sequence[float] = SWEEP_ALPHAS,
                T: float = DEFAULT_T, seeds: Sequence[int] = ALPHA_SWEEP_SEEDS) -> Sweep:
    """Students at several alpha (fixed T): how much weight should the soft targets get?"""
    alphas = _check_values("alphas", alphas, check_unit_interval)
    T = check_positive("temperature T", T)
    seeds = _check_seeds(seeds)
    runs = parallel.run_all([functools.partial(student_run, data, T=T, alpha=a, seed=s) for a in alphas for s in seeds])
    return _sweep("alpha", {a: runs[i * len(seeds):(i + 1) * len(seeds)] for i, a in enumerate(alphas)})


def chosen_temperature(sweep: Sweep) -> float:
    """The temperature above 1 with the best mean validation accuracy: the candidate that
    C2.2 then runs against T = 1 on test with other seeds."""
    if 1 not in sweep.val or len(sweep.val) < 2:
        raise ValueError("the sweep must include T = 1 and at least one other temperature")
    return max((T for T in sweep.val if T != 1), key=lambda T: sweep.val[T].mean)


def temperature_versus_one(data: DataSplits, T: float, *, alpha: float = DEFAULT_ALPHA,
                           seeds: Sequence[int] = REPORTING_SEEDS) -> Comparison:
    """C2.2: students at ``T`` (chosen on validation with the tuning seeds) against students
    at T = 1, same ``alpha``, on the reporting ``seeds``; last-epoch test accuracy, paired."""
    T = check_positive("temperature T", T)
    alpha = check_unit_interval("alpha", alpha)
    seeds = _check_seeds(seeds)
    runs = parallel.run_all([functools.partial(student_run, data, T=t, alpha=alpha, seed=s)
                             for t in (T, 1.0) for s in seeds])
    chosen, at_one = runs[:len(seeds)], runs[len(seeds):]
    return Comparison(f"T = {T:g} (chosen on validation) beats T = 1 on test",
                      treatment=summarize(chosen), control=summarize(at_one))


# --------------------------------------------------------------------------------------
# Shares ("closes most of the gap", "keeps 80% of the gain"), per seed with an interval
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Share:
    """A share measured once per seed (e.g. of a gap that soft targets close), with the 95%
    confidence interval of its mean and the verdict against the paper's ``threshold``:
    reproduced when the interval lies above it, contradicted when below, else inconclusive."""
    claim: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]
    threshold: float

    @property
    def interval(self) -> Interval:
        return Interval.of(self.values)

    @property
    def verdict(self) -> str:
        return Interval.of([v - self.threshold for v in self.values]).verdict(+1)

    def points(self) -> str:
        i = self.interval
        return f"{100 * i.mean:.0f}% [{100 * i.low:.0f}%, {100 * i.high:.0f}%]"

    def report(self) -> str:
        return (f"{self.claim}: {self.points()} (mean per seed, 95% CI, Student t, n = {self.interval.n}); "
                f"the paper's threshold {100 * self.threshold:.0f}% -> {self.verdict}")


def _shares(gained: Sequence[float], gap: Sequence[float]) -> tuple[float, ...]:
    return tuple(g / d if d != 0 else float("nan") for g, d in zip(gained, gap))


# --------------------------------------------------------------------------------------
# C2.5: a small training set, with an early-stopped hard-label baseline as in the paper
# --------------------------------------------------------------------------------------

class TestEveryEpoch(Callback):
    """Adds ``test_acc`` to every epoch's record, so that a run can be early-stopped after
    the fact: the epoch is chosen on ``val_acc`` alone, and its test accuracy is then read."""

    def __init__(self, test: Split):
        self.test = test

    def on_epoch_end(self, history, model):
        history.last["test_acc"] = evaluate(model, self.test)["acc"]


def tracked_student_run(data: DataSplits, *, T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA,
                        fraction: float = 1.0, seed: int = 0) -> RunResult:
    """:func:`student_run` with the test accuracy recorded after every epoch (cached).

    Evaluating does not touch the training (no randomness, the same batches), so the last
    epoch is the run :func:`student_run` would give.
    """
    T = check_positive("temperature T", T)
    alpha = check_unit_interval("alpha", alpha)
    fraction = check_fraction("data fraction", fraction)
    seed = check_positive_int("seed", seed, minimum=0)
    objective = CrossEntropy() if alpha == 0 else Distillation(T=T, alpha=alpha)
    if fraction < 1.0:
        data = data.replace(train=stratified_fraction(data.train, fraction, seed=seed))
    hidden, epochs, lr = tuple(STUDENT_RECIPE["hidden"]), STUDENT_RECIPE["epochs"], STUDENT_RECIPE["lr"]
    config = {"name": "mlp-student-tracked", "objective": repr(objective), "seed": seed, "hidden": hidden,
              "epochs": epochs, "lr": lr, "fraction": fraction, "train_size": len(data.train)}

    def run() -> RunResult:
        started = time.perf_counter()
        model = build_model("mlp", data.input_shape, data.num_classes, seed=seed, hidden=hidden)
        history = fit(model, data.train, data.val, objective=objective, epochs=epochs, lr=lr,
                      batch_size=STUDENT_RECIPE["batch_size"], seed=seed, callbacks=[TestEveryEpoch(data.test)])
        return RunResult(config=dict(config), history=history, val_acc=history.last["val_acc"],
                         test_acc=history.last["test_acc"], seconds=time.perf_counter() - started)

    return cached_run(config, data, run)


def early_stopping_epoch(run: RunResult) -> int:
    """The epoch (1-based) with the best validation accuracy; ties go to the earliest."""
    val = run.history.series("val_acc")
    return 1 + max(range(len(val)), key=lambda i: (val[i], -i))


def early_stopped_test_acc(run: RunResult) -> float:
    """Test accuracy at :func:`early_stopping_epoch` (needs a :func:`tracked_student_run`)."""
    return run.history.records[early_stopping_epoch(run) - 1]["test_acc"]


@dataclass(frozen=True)
class SmallData:
    """Students on a small stratified ``fraction`` of the training set, and the full-data baseline."""
    fraction: float
    train_size: int
    tuning: Sweep                  # soft targets at each T, tuning seeds, scored on validation
    soft: list[RunResult]          # alpha = 1 at the chosen T: soft targets only, reporting seeds
    hard: list[RunResult]          # alpha = 0: labels only, reporting seeds
    full_hard: Summary             # labels only, all of the training set, same seeds (last epoch, test)

    @property
    def T(self) -> float:
        return self.tuning.best

    def arm(self, name: str, stopping: str = "last") -> Summary:
        """Test accuracy of ``name`` ("soft" or "hard") at the last or the early-stopped epoch."""
        runs = getattr(self, name)
        if stopping == "last":
            return summarize(runs)
        if stopping == "early":
            return Summary(tuple(early_stopped_test_acc(r) for r in runs), summarize(runs).seeds)
        raise ValueError(f"stopping must be 'last' or 'early', got {stopping!r}")

    @property
    def comparison(self) -> Comparison:
        """The paper's comparison: soft targets, last epoch, vs hard labels early-stopped on validation."""
        return Comparison(f"on {100 * self.fraction:g}% of the data, soft targets (last epoch) beat "
                          "hard labels (early-stopped on validation)",
                          treatment=self.arm("soft"), control=self.arm("hard", "early"))

    @property
    def last_epoch_comparison(self) -> Comparison:
        return Comparison(f"on {100 * self.fraction:g}% of the data, soft targets beat hard labels (both last epoch)",
                          treatment=self.arm("soft"), control=self.arm("hard"))

    @property
    def early_stopped_comparison(self) -> Comparison:
        return Comparison(f"on {100 * self.fraction:g}% of the data, soft targets beat hard labels "
                          "(both early-stopped)", treatment=self.arm("soft", "early"), control=self.arm("hard", "early"))

    @property
    def gap_closed(self) -> Share:
        """Per seed: (soft - hard) / (full-data hard - hard), hard early-stopped as in the paper."""
        soft, hard, full = self.arm("soft").values, self.arm("hard", "early").values, self.full_hard.values
        return Share("share of the gap to full-data training that soft targets close",
                     _shares([s - h for s, h in zip(soft, hard)], [f - h for f, h in zip(full, hard)]),
                     summarize(self.soft).seeds, MOST)

    def table(self) -> str:
        epochs = [early_stopping_epoch(r) for r in self.hard]
        return "\n".join([
            f"{self.train_size} training signals ({100 * self.fraction:g}%), test accuracy, "
            f"mean ± std over {len(self.soft)} reporting seeds:",
            f"  hard labels, last epoch:                 {self.arm('hard')}",
            f"  hard labels, early-stopped on validation: {self.arm('hard', 'early')} "
            f"(epochs {min(epochs)}-{max(epochs)} of {len(self.hard[0].history)})",
            f"  soft targets (alpha = 1, T = {self.T:g}), last epoch: {self.arm('soft')}",
            f"  soft targets, early-stopped:              {self.arm('soft', 'early')}",
            f"  hard labels, full training set, last epoch: {self.full_hard}"])


def small_data(data: DataSplits, *, fraction: float = SMALL_DATA_FRACTION,
               temperatures: Sequence[float] = SWEEP_TEMPERATURES, tuning_seeds: Sequence[int] = TUNING_SEEDS,
               seeds: Sequence[int] = REPORTING_SEEDS, full_hard: Summary | None = None) -> SmallData:
    """C2.5: soft targets (alpha = 1) vs hard labels on a ``fraction`` of the training set.

    The soft targets' T is chosen on validation with ``tuning_seeds``; the hard-label arm has
    no T, and gets early stopping on validation instead (as the paper's baseline did). Both
    arms then run on the reporting ``seeds``, with the test accuracy of every epoch recorded.
    The teacher was trained on all of the data. ``full_hard`` (test accuracy of label-only
    students on all of the data, same seeds) is reused when given, e.g. the control arm of
    :func:`kdkit.experiments.start_here.kd_versus_labels`.
    """
    fraction = check_fraction("data fraction", fraction)
    seeds = _check_seeds(seeds)
    tuning = temperature_sweep(data, temperatures=temperatures, alpha=1.0, seeds=tuning_seeds, fraction=fraction)
    soft = [tracked_student_run(data, T=tuning.best, alpha=1.0, fraction=fraction, seed=s) for s in seeds]
    hard = [tracked_student_run(data, alpha=0.0, fraction=fraction, seed=s) for s in seeds]
    if full_hard is None:
        full_hard = summarize(student_run(data, alpha=0.0, seed=s) for s in seeds)
    if full_hard.seeds is not None and full_hard.seeds != seeds:
        raise ValueError(f"full_hard ran on seeds {full_hard.seeds}, the small-data arms on {seeds}")
    return SmallData(fraction, soft[0].config["train_size"], tuning, soft, hard, full_hard)


# --------------------------------------------------------------------------------------
# C2.6: the omitted class
# --------------------------------------------------------------------------------------

class _KeepModel(Callback):
    """Remembers the model a run trains, so that its logits can be read afterwards."""
    model = None

    def on_fit_start(self, model, epochs):
        self.model = model


def class_accuracy(logits: torch.Tensor, labels: torch.Tensor, cls: int) -> float:
    members = labels == cls
    return float((logits[members].argmax(dim=1) == cls).float().mean())


def with_bias(logits: torch.Tensor, cls: int, bias: float) -> torch.Tensor:
    """``logits`` with ``bias`` added to class ``cls``'s logit, shape (N, K)."""
    shifted = logits.clone()
    shifted[:, cls] += bias
    return shifted


def choose_bias(logits: torch.Tensor, labels: torch.Tensor, cls: int,
                biases: Sequence[float] = BIAS_GRID) -> float:
    """The bias on class ``cls``'s logit that maximises overall accuracy on (validation) data.

    Ties go to the smallest bias. Hinton et al. chose theirs (3.5) on the *test* set; here it
    is chosen on validation data and then applied, unchanged, to the test set.
    """
    scores = [(float((with_bias(logits, cls, b).argmax(dim=1) == labels).float().mean()), -b) for b in biases]
    return -max(scores)[1]


@dataclass(frozen=True)
class OmittedRun:
    seed: int
    bias: float                    # chosen on validation
    class_acc_before: float        # test accuracy (recall) on the omitted class
    class_acc_after: float
    other_acc_before: float        # test accuracy on the examples of every other class
    other_acc_after: float
    test_acc_before: float         # overall test accuracy
    test_acc_after: float
    test_errors_before: int
    test_errors_after: int


@dataclass(frozen=True)
class OmittedClass:
    omitted: int
    kd: list[OmittedRun]
    labels_only: list[OmittedRun]

    def summary(self, runs: str, field: str) -> Summary:
        chosen = getattr(self, runs)
        return Summary(tuple(getattr(r, field) for r in chosen), tuple(r.seed for r in chosen))

    @property
    def comparison(self) -> Comparison:
        """C2.6: overall test accuracy after the bias correction (chosen on validation), the KD
        student vs a label-only student that never saw the class either."""
        return Comparison(f"never shown a {self.omitted}, the KD student beats the label-only student "
                          "(both with the bias chosen on validation; all test digits)",
                          treatment=self.summary("kd", "test_acc_after"),
                          control=self.summary("labels_only", "test_acc_after"))

    @property
    def bias_correction(self) -> Comparison:
        """C2.6b: the KD student's overall test accuracy after the correction vs before it
        (the paper's 206 -> 109 errors). Not guaranteed: the bias was chosen on validation,
        and raising one logit can turn right answers on the other digits into wrong 3s."""
        return Comparison("the bias correction chosen on validation raises the KD student's test accuracy",
                          treatment=self.summary("kd", "test_acc_after"), control=self.summary("kd", "test_acc_before"))

    @property
    def other_digits(self) -> Comparison:
        """The KD student vs the label-only student on the digits both saw (description)."""
        return Comparison("on the other digits, the KD student beats the label-only student",
                          treatment=self.summary("kd", "other_acc_after"),
                          control=self.summary("labels_only", "other_acc_after"))

    def table(self) -> str:
        rows = []
        for name in ("kd", "labels_only"):
            rows.append(f"{'KD' if name == 'kd' else 'labels only':>11}: digit {self.omitted} "
                        f"{self.summary(name, 'class_acc_before')} -> {self.summary(name, 'class_acc_after')} "
                        f"after the bias (chosen on val, mean {self.summary(name, 'bias').mean:.1f}); "
                        f"other digits {self.summary(name, 'other_acc_before')} -> "
                        f"{self.summary(name, 'other_acc_after')}; all digits "
                        f"{self.summary(name, 'test_acc_before')} -> {self.summary(name, 'test_acc_after')}")
        return "\n".join(rows)


def _omitted_run(data: DataSplits, objective, *, omitted: int, seed: int, biases) -> OmittedRun:
    config = {"name": "mlp-student-omitted-class", "objective": repr(objective), "seed": seed,
              "omitted": omitted, "biases": list(biases), "hidden": tuple(STUDENT_RECIPE["hidden"]),
              "epochs": STUDENT_RECIPE["epochs"], "lr": STUDENT_RECIPE["lr"], "data": data_fingerprint(data)}

    def compute() -> dict:
        keep = _KeepModel()
        transfer = data.replace(train=without_classes(data.train, [omitted]))
        train_student(transfer, objective, seed=seed, callbacks=[keep])
        val_logits = predict_logits(keep.model, data.val.x)
        test_logits = predict_logits(keep.model, data.test.x)
        bias = choose_bias(val_logits, data.val.y, omitted, biases)
        after = with_bias(test_logits, omitted, bias)
        y = data.test.y
        others = y != omitted

        def errors(z):
            return int((z.argmax(dim=1) != y).sum())

        def other_acc(z):
            return float((z[others].argmax(dim=1) == y[others]).float().mean())

        return asdict(OmittedRun(seed=seed, bias=bias,
                                 class_acc_before=class_accuracy(test_logits, y, omitted),
                                 class_acc_after=class_accuracy(after, y, omitted),
                                 other_acc_before=other_acc(test_logits), other_acc_after=other_acc(after),
                                 test_acc_before=1 - errors(test_logits) / len(y),
                                 test_acc_after=1 - errors(after) / len(y),
                                 test_errors_before=errors(test_logits), test_errors_after=errors(after)))

    return OmittedRun(**cached(config, compute))


def omitted_class(data: DataSplits, *, omitted: int = OMITTED_CLASS, T: float = DEFAULT_T,
                  alpha: float = DEFAULT_ALPHA, seeds: Sequence[int] = REPORTING_SEEDS,
                  biases: Sequence[float] = BIAS_GRID) -> OmittedClass:
    """C2.6: students whose transfer set has no example of ``omitted``; bias chosen on validation.

    The teacher saw every class. Two arms, same seeds: KD (``T``, ``alpha``: notebook 00's,
    chosen on validation) and labels only. Each run is trained once and its numbers cached.
    """
    if isinstance(omitted, bool) or not isinstance(omitted, int) or not 0 <= omitted < data.num_classes:
        raise ValueError(f"omitted must be a class index in [0, {data.num_classes - 1}], got {omitted!r}")
    T = check_positive("temperature T", T)
    alpha = check_unit_interval("alpha", alpha)
    seeds = _check_seeds(seeds)
    biases = _check_values("biases", biases, lambda name, b: float(b))
    kd = [_omitted_run(data, Distillation(T=T, alpha=alpha), omitted=omitted, seed=s, biases=biases)
          for s in seeds]
    labels_only = [_omitted_run(data, CrossEntropy(), omitted=omitted, seed=s, biases=biases) for s in seeds]
    return OmittedClass(omitted, kd, labels_only)


# --------------------------------------------------------------------------------------
# C2.7: the speech experiment in miniature - an ensemble distilled into one model
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnsembleDistillation:
    """Label-trained students, their ensemble, and one student distilled from the ensemble."""
    member_seeds: tuple[int, ...]
    member_test_accs: tuple[float, ...]
    ensemble_test_acc: float       # argmax of the members' averaged logits
    T: float
    alpha: float
    distilled: list[RunResult]     # same architecture, distilled from the ensemble, reporting seeds
    baseline: Summary              # same architecture on labels, same seeds (last epoch, test)
    train_top_prob: dict[float, float]   # the ensemble's mean top-class probability on the
                                         # training signals (the transfer set), at T = 1 and at T

    @property
    def comparison(self) -> Comparison:
        return Comparison(f"one student distilled from an ensemble of {len(self.member_seeds)} beats "
                          "the same student trained on labels",
                          treatment=summarize(self.distilled), control=self.baseline)

    @property
    def kept(self) -> Share:
        """Per seed: (distilled - baseline) / (ensemble - baseline); the paper: 1.9 / 2.2 = 86%."""
        distilled, baseline = summarize(self.distilled).values, self.baseline.values
        return Share("share of the ensemble's gain the distilled student keeps",
                     _shares([d - b for d, b in zip(distilled, baseline)],
                             [self.ensemble_test_acc - b for b in baseline]),
                     summarize(self.distilled).seeds, PAPER_KEPT)

    def table(self) -> str:
        members = Summary(self.member_test_accs)
        return "\n".join([
            "test accuracy (MLP 40-100-100-10 everywhere):",
            f"  one student on labels ({len(self.baseline.values)} reporting seeds):    {self.baseline}",
            f"  ensemble of {len(self.member_seeds)} students on labels (seeds {self.member_seeds[0]}-"
            f"{self.member_seeds[-1]}): {100 * self.ensemble_test_acc:.1f}% "
            f"(members alone {members})",
            f"  one student distilled from the ensemble (T = {self.T:g}, alpha = {self.alpha:g}): "
            f"{summarize(self.distilled)}"])


def ensemble_members(data: DataSplits, seeds: Sequence[int] = ENSEMBLE_MEMBER_SEEDS) -> list:
    """Label-trained MLP students (the student recipe), one per seed: cached checkpoints."""
    seeds = _check_seeds(seeds)
    return [trained_on_labels(data, STUDENT_RECIPE, name="mlp-member", seed=s) for s in seeds]


def ensemble_teacher_data(data: DataSplits, member_seeds: Sequence[int] = ENSEMBLE_MEMBER_SEEDS) -> DataSplits:
    """``data`` with the ensemble's averaged logits as the cached teacher logits."""
    return with_teacher_logits([m.model for m in ensemble_members(data, member_seeds)], data)


def choose_ensemble_settings(data: DataSplits, *, temperatures: Sequence[float] = ENSEMBLE_GRID["temperatures"],
                             alphas: Sequence[float] = ENSEMBLE_GRID["alphas"],
                             seeds: Sequence[int] = ENSEMBLE_GRID["seeds"],
                             member_seeds: Sequence[int] = ENSEMBLE_MEMBER_SEEDS) -> dict:
    """Grid over (T, alpha) for distilling the ensemble, scored by mean *validation* accuracy
    over tuning ``seeds`` (how :data:`ENSEMBLE_T` and :data:`ENSEMBLE_ALPHA` were chosen)."""
    temperatures = _check_values("temperatures", temperatures, check_positive)
    alphas = _check_values("alphas", alphas, check_unit_interval)
    seeds = _check_seeds(seeds)
    ensemble = ensemble_teacher_data(data, member_seeds)
    scores = {(T, a): summarize((train_student(ensemble, Distillation(T=T, alpha=a), seed=s) for s in seeds),
                                "val_acc").mean for T in temperatures for a in alphas}
    best = max(scores, key=scores.get)
    return {"T": best[0], "alpha": best[1], "val_acc": scores[best], "scores": scores}


def ensemble_distillation(data: DataSplits, *, member_seeds: Sequence[int] = ENSEMBLE_MEMBER_SEEDS,
                          T: float = ENSEMBLE_T, alpha: float = ENSEMBLE_ALPHA,
                          seeds: Sequence[int] = REPORTING_SEEDS,
                          baseline: Summary | None = None) -> EnsembleDistillation:
    """C2.7, the paper's speech experiment (Table 1) in miniature.

    Hinton et al. trained 10 acoustic models of one architecture on labels, averaged them,
    and distilled the ensemble into one model of the same architecture. Here: label-trained
    MLP students (``member_seeds``), their averaged logits as the teacher, and fresh
    students on the reporting ``seeds`` (disjoint from the members' seeds) distilled from it
    with ``T`` and ``alpha`` chosen on validation (:func:`choose_ensemble_settings`).
    ``baseline`` is the label-only student on the same seeds, e.g. the control arm of
    :func:`kdkit.experiments.start_here.kd_versus_labels`.
    """
    member_seeds = _check_seeds(member_seeds)
    seeds = _check_seeds(seeds)
    if set(member_seeds) & set(seeds):
        raise ValueError(f"the students' seeds {seeds} must differ from the members' seeds {member_seeds}: "
                         "a student would otherwise start from a member's initial weights")
    T = check_positive("temperature T", T)
    alpha = check_unit_interval("alpha", alpha)
    members = ensemble_members(data, member_seeds)
    ensemble = with_teacher_logits([m.model for m in members], data)
    ensemble_acc = float((ensemble.test.teacher_logits.argmax(dim=1) == ensemble.test.y).float().mean())
    distilled = [train_student(ensemble, Distillation(T=T, alpha=alpha), seed=s) for s in seeds]
    if baseline is None:
        baseline = summarize(train_student(data, CrossEntropy(), seed=s) for s in seeds)
    if baseline.seeds is not None and baseline.seeds != seeds:
        raise ValueError(f"baseline ran on seeds {baseline.seeds}, the distilled students on {seeds}")
    return EnsembleDistillation(member_seeds, tuple(m.metrics["test_acc"] for m in members), ensemble_acc,
                                T, alpha, distilled, baseline,
                                {t: top_class_probability(ensemble.train.teacher_logits, t) for t in (1.0, T)})


def top_class_probability(logits: torch.Tensor, T: float = 1.0) -> float:
    """Mean probability of the top class in ``softmax(logits / T)``: how peaked a teacher is."""
    return float(torch.softmax(logits / T, dim=1).max(dim=1).values.mean())


# --------------------------------------------------------------------------------------
# Verdicts: one row per claim, shared by the notebook's "Did we reproduce it?" cell,
# the claims test and the command line
# --------------------------------------------------------------------------------------

GRADIENT_TEMPERATURES = (1, 2, 4, 8, 16, 32)


def gradient_scaling_verdict(temperatures: Sequence[float] = GRADIENT_TEMPERATURES) -> str:
    """C2.3: log-log slope of the soft gradient's norm, without T^2 (about -2) and with it (about 0)."""
    without = loglog_slope(soft_gradient_norms(temperatures, with_T2=False))
    with_t2 = loglog_slope(soft_gradient_norms(temperatures, with_T2=True))
    ok = abs(without + 2) < 0.1 and abs(with_t2) < 0.1
    return "reproduced" if ok else f"not reproduced (slopes {without:.2f} and {with_t2:.2f})"


def high_temperature_verdict(temperatures: Sequence[float] = GRADIENT_TEMPERATURES) -> str:
    """C2.4: the KD/MSE gradient gap shrinks at every step up in T and is below 5% at the largest T."""
    gaps = list(high_temperature_gap(temperatures).values())
    ok = all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 0.05
    return "reproduced" if ok else "not reproduced"


@dataclass(frozen=True)
class Verdict:
    """One row of the "Did we reproduce it?" table."""
    claim: str
    paper: str
    measured: str
    verdict: str


def _measured(comparison: Comparison) -> str:
    return (f"{comparison.treatment} vs {comparison.control}, paired difference "
            f"{comparison.difference.points()} points, n = {comparison.difference.n}")


def verdict_rows(kd_vs_labels: Comparison, t_versus_one: Comparison, small: SmallData,
                 omitted: OmittedClass, ensemble: EnsembleDistillation) -> list[Verdict]:
    """Every claim notebook 02 tests: the paper's number, ours (95% CI), the verdict."""
    slopes = (loglog_slope(soft_gradient_norms(GRADIENT_TEMPERATURES, with_T2=False)),
              loglog_slope(soft_gradient_norms(GRADIENT_TEMPERATURES, with_T2=True)))
    gaps = list(high_temperature_gap(GRADIENT_TEMPERATURES).values())
    pct = f"{100 * small.fraction:g}%"
    return [
        Verdict("C2.1 KD student beats the label-only student", "146 -> 74 MNIST errors",
                _measured(kd_vs_labels), kd_vs_labels.verdict),
        Verdict("C2.2 the best T is above 1 (chosen on validation, tested against T = 1)",
                "T = 20; all T above 8 similar (300+ units)", _measured(t_versus_one), t_versus_one.verdict),
        Verdict("C2.3 without T², soft gradients fall like 1/T²", "scale as 1/T²",
                f"log-log slopes {slopes[0]:.2f} (without T²), {slopes[1]:.2f} (with)", gradient_scaling_verdict()),
        Verdict("C2.4 at high T, KD ≈ MSE on centred logits", "equivalent in the high-T limit",
                f"relative gradient gap {gaps[0]:.2f} at T = {GRADIENT_TEMPERATURES[0]} -> {gaps[-1]:.2f} "
                f"at T = {GRADIENT_TEMPERATURES[-1]}", high_temperature_verdict()),
        Verdict(f"C2.5 on {pct} of the data, soft targets beat early-stopped hard labels",
                "3% of the data: 57.0% vs 44.5%", _measured(small.comparison), small.comparison.verdict),
        Verdict("C2.5b ... and close most (> 50%) of the gap to full data",
                f"{100 * PAPER_SMALL_DATA_SHARE:.0f}% of it", f"{small.gap_closed.points()}, n = "
                f"{small.gap_closed.interval.n}", small.gap_closed.verdict),
        Verdict(f"C2.6 never shown a {omitted.omitted}, the KD student (bias chosen on validation) "
                "beats the label-only student", "206 -> 109 errors after the bias (chosen on test)",
                _measured(omitted.comparison), omitted.comparison.verdict),
        Verdict("C2.6b the bias correction lowers the KD student's test error", "206 -> 109 errors",
                _measured(omitted.bias_correction), omitted.bias_correction.verdict),
        Verdict("C2.7 an ensemble distilled into one model beats that model on labels",
                "speech: 58.9% -> 60.8% frame accuracy", _measured(ensemble.comparison),
                ensemble.comparison.verdict),
        Verdict("C2.7b ... keeping more than 80% of the ensemble's gain",
                f"{100 * PAPER_ENSEMBLE_SHARE:.0f}% (1.9 of 2.2 points)",
                f"{ensemble.kept.points()}, n = {ensemble.kept.interval.n}", ensemble.kept.verdict),
    ]


# The claims whose verdicts the notebook's nbval-checked cell prints: the same category on two
# disjoint sets of reporting seeds (100-107 and 200-207), each interval clear of its threshold.
# C2.7 is left out: inconclusive on both, but on 200-209 (ten seeds) its interval lies just above 0.
STABLE_CLAIMS = ("C2.1", "C2.2", "C2.3", "C2.4", "C2.5", "C2.5b", "C2.6", "C2.6b", "C2.7b")


def verdicts(*results) -> dict[str, str]:
    """Claim -> verdict, for every claim notebook 02 tests (arguments as :func:`verdict_rows`)."""
    return {row.claim: row.verdict for row in verdict_rows(*results)}


def verdict_table(rows: Sequence[Verdict]) -> str:
    """The rows as text: claim, then the paper's number, ours and the verdict, indented."""
    lines = []
    for row in rows:
        lines += [f"{row.claim}: {row.verdict}", f"    paper: {row.paper}", f"    here:  {row.measured}"]
    return "\n".join(lines)


def reproduce(seeds: int = 10) -> list[str]:
    """Every claim of notebook 02 with the notebook's settings, as report lines (for the CLI).

    ``seeds`` reporting seeds, 100, 101, ...; settings are chosen with the tuning seeds.
    """
    from kdkit.experiments.mnist1d import data_with_teacher

    seeds = check_positive_int("seeds", seeds, minimum=2)
    reporting = range(REPORTING_SEEDS.start, REPORTING_SEEDS.start + seeds)
    data = data_with_teacher()
    kd_vs_labels = start_here.kd_versus_labels(data, seeds=reporting)
    t_sweep = temperature_sweep(data)
    t_versus_one = temperature_versus_one(data, chosen_temperature(t_sweep), seeds=reporting)
    small = small_data(data, seeds=reporting, full_hard=kd_vs_labels.control)
    omitted = omitted_class(data, seeds=reporting)
    ensemble = ensemble_distillation(data, seeds=reporting, baseline=kd_vs_labels.control)
    rows = verdict_rows(kd_vs_labels, t_versus_one, small, omitted, ensemble)
    return [kd_vs_labels.report(), t_sweep.table(), t_versus_one.report(),
            small.tuning.table(), small.table(), small.comparison.report(), small.last_epoch_comparison.report(),
            small.early_stopped_comparison.report(), small.gap_closed.report(),
            omitted.table(), omitted.comparison.report(), omitted.bias_correction.report(),
            omitted.other_digits.report(), ensemble.table(), ensemble.comparison.report(), ensemble.kept.report(),
            verdict_table(rows)]
