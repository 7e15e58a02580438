"""Plots: pure functions that return a matplotlib Figure, and the live-plot callback.

Each figure is created through ``pyplot`` (so that Jupyter knows how to show it as a PNG)
and immediately released from pyplot's list of open figures: it is shown exactly once,
where a notebook displays it (as the last expression of a cell), and never leaks memory
across a long session of slider moves. Importing this module changes no matplotlib
setting. Figures use a modest dpi so that executed notebooks stay small.
"""
from __future__ import annotations

import base64
import io
import time
from typing import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from kdkit.data import Split
from kdkit.train import Callback, History
from kdkit.validation import check_temperature

DPI = 72
METRIC_LABELS = {"train_acc": "train accuracy", "val_acc": "validation accuracy",
                 "train_loss": "train loss", "val_loss": "validation loss",
                 "train_relative_mse": "relative MSE to the teacher"}


def new_figure(width: float = 6.0, height: float = 3.2) -> Figure:
    """An empty figure that Jupyter renders as a PNG and pyplot no longer tracks."""
    import matplotlib.pyplot as plt  # imported on first use: it selects a backend

    fig = plt.figure(figsize=(width, height), dpi=DPI, layout="constrained")
    plt.close(fig)
    return fig


def plot_examples(split: Split, class_names: Sequence[str], *, per_class: int = 3) -> Figure:
    """A few examples of every class: line plots for 1-D signals, images otherwise."""
    num_classes = len(class_names)
    fig = new_figure(10, 1.1 * per_class + 0.6)
    axes = fig.subplots(per_class, num_classes, squeeze=False, sharex=True, sharey=True)
    for cls in range(num_classes):
        members = torch.nonzero(split.y == cls).squeeze(1)[:per_class]
        for row, index in enumerate(members.tolist()):
            ax = axes[row][cls]
            example = split.x[index]
            if example.dim() == 1:
                ax.plot(example.numpy(), color=f"C{cls}", linewidth=1.2)
            else:
                ax.imshow(example.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][cls].set_title(class_names[cls])
    return fig


def plot_curves(histories: Mapping[str, History], *, metrics: Sequence[str] = ("val_acc",),
                title: str = "", reference: Mapping[str, History] | None = None,
                ylim: tuple[float, float] | None = None) -> Figure:
    """Metric vs epoch for several runs; ``reference`` runs are drawn faint, for comparison.

    A run of a model with several outputs (a cohort's peers, a network's exits) gets one
    curve per output, in its own colour.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    styles = ("-", "--", ":")
    for label, history in (reference or {}).items():
        for style, metric in zip(styles, metrics):  # the same line style as the runs' metric
            ax.plot(history.epochs_of(metric), history.series(metric), style, color="0.6",
                    linewidth=1.5, label=f"{label} ({METRIC_LABELS.get(metric, metric)})")
    colour = 0
    for label, history in histories.items():
        for output in _outputs(history, metrics[0]):  # each peer or exit of a model, or the model
            name = label if output is None else f"{label}: {output}"
            for style, metric in zip(styles, metrics):
                key = metric if output is None else f"{metric}/{output}"
                if _measured(history, key):
                    ax.plot(history.epochs_of(key), history.series(key), style, color=f"C{colour}",
                            label=f"{name} ({METRIC_LABELS.get(metric, metric)})")
            colour += 1
    _style_curve_axes(ax, metrics, title=title, ylim=ylim)
    return fig


def _measured(history: History, key: str) -> bool:
    """True if some epoch of ``history`` measured ``key`` (a procedure of several steps, e.g.
    Stagewise KD, measures some metrics only in some of its steps)."""
    return any(key in record for record in history.records)


def _style_curve_axes(ax, metrics: str | Sequence[str], *, title: str = "", ylim=None) -> None:
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    ax.set_xlabel("epoch")
    if all(m.endswith("acc") for m in metrics):
        ax.set_ylabel("accuracy")
    else:
        ax.set_ylabel(" / ".join(dict.fromkeys(METRIC_LABELS.get(m, m) for m in metrics)))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=9, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)


def _outputs(history: History, metric: str) -> list[str | None]:
    """The outputs a history has curves for: each peer or exit (``val_acc/peer1``...) when
    the model had several, else ``[None]`` for the model's one output."""
    if not history.records:
        return [None]
    names = [key.split("/", 1)[1] for key in history.last if key.startswith(f"{metric}/")]
    return names or [None]


def plot_accuracy_vs_compute(points: Mapping[str, Sequence[tuple[str, float, float]]] | None = None,
                             curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None, *,
                             highlight: Mapping[str, tuple[float, float]] | None = None,
                             title: str = "", ylim: tuple[float, float] | None = None) -> Figure:
    """Accuracy against multiply-adds per example (the cost of an answer).

    ``points``: name -> [(label, multiply-adds, accuracy), ...], e.g. the exits of one
    network, drawn as markers joined by a line, each labelled unless its label is ""; ``curves``: name -> (multiply-adds,
    accuracies), e.g. early exit as its threshold moves, drawn as lines; ``highlight``:
    name -> (multiply-adds, accuracy), drawn as a large dot on the curve of that name.
    """
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    colours = {}                                           # curves first: the arms keep their colours
    for name in [*(curves or {}), *(points or {})]:
        colours.setdefault(name, f"C{len(colours)}")
    for name, series in (points or {}).items():
        xs, ys = [m / 1000 for _, m, _ in series], [100 * a for _, _, a in series]
        ax.plot(xs, ys, "o-", color=colours[name], label=name)
        for (label, x_value, y_value) in series:
            if not label:
                continue
            ax.annotate(label, (x_value / 1000, 100 * y_value), textcoords="offset points", xytext=(4, -10),
                        fontsize=8, color=colours[name])
    for name, (macs, accuracy) in (curves or {}).items():
        ax.plot([m / 1000 for m in macs], [100 * a for a in accuracy], "-", color=colours[name], label=name)
    for name, (macs, accuracy) in (highlight or {}).items():
        ax.plot([macs / 1000], [100 * accuracy], "o", markersize=10, color=colours.get(name, "k"), alpha=0.8)
    ax.set_xlabel("multiply-adds per example (thousands)")
    ax.set_ylabel("test accuracy (%)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_differences(rows: Mapping[str, Mapping[str, tuple[float, float, float]]], *, title: str = "",
                     xlabel: str = "paired difference (accuracy points)") -> Figure:
    """Paired differences with their 95% intervals, one row per comparison, grouped.

    ``rows``: group -> {label: (mean, low, high)} in accuracy (0.02 is two points), e.g. per data
    regime, each method's difference from the label-only student on the same seeds. A row whose
    interval misses 0 is drawn solid, one that contains 0 hollow.
    """
    labels = [(group, label) for group, inner in rows.items() for label in inner]
    fig = new_figure(6.4, 0.8 + 0.32 * len(labels))
    ax = fig.add_subplot()
    for index, (group, label) in enumerate(labels):
        mean, low, high = (100 * v for v in rows[group][label])
        colour = f"C{list(rows).index(group)}"
        y = len(labels) - 1 - index
        ax.plot([low, high], [y, y], "-", color=colour, linewidth=2)
        clear = low > 0 or high < 0
        ax.plot([mean], [y], "o", color=colour, markerfacecolor=colour if clear else "white", markersize=7)
    ax.set_yticks(range(len(labels)), [f"{label} ({group})" for group, label in reversed(labels)], fontsize=8)
    ax.axvline(0, color="0.4", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_stage_losses(histories: Mapping[str, History], *, title: str = "") -> Figure:
    """A stagewise run's relative MSE to the teacher (``train_relative_mse``) along the procedure,
    for each run of ``histories`` in its own colour. Each stage gets the same width on the x axis
    (runs with different epochs a stage line up), with its name above it."""
    fig = new_figure(6.4, 3.2)
    ax = fig.add_subplot()
    names: list[str] = []
    for colour, (label, history) in enumerate(histories.items()):
        stages = list(dict.fromkeys(r["stage"] for r in history.records if "train_relative_mse" in r))
        for index, stage in enumerate(stages):
            records = [r for r in history.records if r.get("stage") == stage]
            xs = [index + (k + 1) / len(records) for k in range(len(records))]     # stage k spans (k, k + 1]
            ax.plot(xs, [r["train_relative_mse"] for r in records], "-", color=f"C{colour}",
                    label=label if index == 0 else None)
            if stage not in names:
                names.append(stage)
    for index, stage in enumerate(names):
        ax.axvline(index, color="0.8", linewidth=1)
        ax.text(index + 0.5, 1.02, stage, transform=ax.get_xaxis_transform(), ha="center", fontsize=8)
    ax.set_xticks(range(len(names) + 1))
    ax.set_xlabel("the procedure, stage by stage (each stage's epochs from its start to its end)")
    ax.set_ylabel("relative MSE to the teacher")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10, pad=16)
    return fig


def plot_views(x: torch.Tensor, views: Mapping[str, torch.Tensor], *, title: str = "") -> Figure:
    """One signal seen through each view (name -> the viewed signal, 1-D), side by side."""
    fig = new_figure(2.6 * len(views), 2.0)
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    for index, (ax, (name, seen)) in enumerate(zip(axes, views.items())):
        style = {"linewidth": 1.2, "color": f"C{index}"}
        if name == "spectrum":
            ax.bar(range(seen.shape[-1]), seen.numpy(), color=f"C{index}")
            ax.set_xlabel("frequency bin", fontsize=8)
        else:
            ax.plot(seen.numpy(), **style)
            ax.set_xlabel("position", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_teacher_weights(weights: Mapping[str, float], *, title: str = "the teachers' weights") -> Figure:
    """Each teacher's share of the mixed target, ``mu_j / sum mu`` (a teacher left out: 0)."""
    total = sum(weights.values())
    shares = [w / total if total > 0 else 0.0 for w in weights.values()]
    fig = new_figure(3.2, 0.5 + 0.28 * len(weights))
    ax = fig.add_subplot()
    positions = range(len(weights) - 1, -1, -1)
    ax.barh(list(positions), shares, color=[f"C{i}" for i in range(len(weights))])
    ax.set_yticks(list(positions), list(weights), fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the target" if total > 0 else "no teacher: labels only", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def plot_attention_maps(maps: Mapping[str, Mapping[str, torch.Tensor]], *, title: str = "") -> Figure:
    """Where each network's layers "look" along one signal (attention transfer, Zagoruyko &
    Komodakis 2017): ``maps`` is network -> {layer: its normalised attention vector (positions,)};
    one panel per layer, one curve per network, drawn over the signal's length so that layers of
    different resolution line up."""
    layers = list(dict.fromkeys(layer for inner in maps.values() for layer in inner))
    fig = new_figure(2.6 * len(layers), 2.2)
    axes = fig.subplots(1, len(layers), squeeze=False)[0]
    for ax, layer in zip(axes, layers):
        for index, (network, inner) in enumerate(maps.items()):
            if layer in inner:
                a = inner[layer].detach()
                edges = torch.linspace(0, 1, len(a) + 1)                     # each position's span of the signal
                ax.stairs(a.numpy(), edges.numpy(), color=f"C{index}", label=network)
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("position along the signal", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_matrices(matrices: Mapping[str, torch.Tensor], *, title: str = "", order: torch.Tensor | None = None) -> Figure:
    """Square (B, B) matrices side by side with one shared colour scale (a pairwise-distance or a
    similarity matrix of one batch, per network): relation-based KD makes the student's match the
    teacher's. ``order`` reorders the examples (e.g. sorted by class, so blocks appear)."""
    shown = {name: (m if order is None else m[order][:, order]).detach() for name, m in matrices.items()}
    low = min(float(m.min()) for m in shown.values())
    high = max(float(m.max()) for m in shown.values())
    fig = new_figure(2.5 * len(shown) + 0.6, 2.6)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (name, m) in zip(axes, shown.items()):
        image = ax.imshow(m.numpy(), vmin=low, vmax=high, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_soft_targets(logits: torch.Tensor, temperatures: Sequence[float],
                      class_names: Sequence[str], *, true_class: int | None = None) -> Figure:
    """One example's softened distribution ``softmax(z / T)`` at several temperatures.

    This is Hinton's "dark knowledge": at T = 1 the teacher is almost one-hot; as T grows,
    the small probabilities it gives to the *wrong* classes become visible, and they say
    which classes it finds similar.
    """
    if logits.dim() != 1:
        raise ValueError(f"logits must be one example's (K,) vector, got shape {tuple(logits.shape)}")
    for T in temperatures:
        check_temperature(T)
    fig = new_figure(3.0 * len(temperatures), 2.6)
    axes = fig.subplots(1, len(temperatures), sharey=True, squeeze=False)[0]
    positions = range(len(class_names))
    for ax, T in zip(axes, temperatures):
        probs = torch.softmax(logits / T, dim=0).numpy()
        colors = ["C3" if k == true_class else "C0" for k in positions]
        ax.bar(positions, probs, color=colors)
        ax.set_xticks(list(positions), class_names, fontsize=8)
        ax.set_title(f"T = {T:g}")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("probability")
    return fig


def plot_kd_schematic() -> Figure:
    """The picture of knowledge distillation: one input, two nets, two targets, one loss."""
    fig = new_figure(8.5, 2.9)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.axis("off")
    boxes = {"input": (0.2, 1.6, "input x"),
             "teacher": (2.2, 2.8, "teacher\n(costly, trained)"), "student": (2.2, 0.3, "student\n(cheap)"),
             "soft": (5.0, 2.8, "soft targets\nsoftmax(z_t / T)"), "pred": (5.0, 0.3, "prediction\nsoftmax(z_s / T)"),
             "label": (5.0, 1.55, "label y\n(one-hot)"),
             "loss": (7.9, 1.6, "loss\n(1-a) CE + a T² KL")}
    centres = {}
    for key, (x, y, text) in boxes.items():
        colour = {"teacher": "#f4c7a1", "student": "#a9d3f5", "loss": "#c9e7b7"}.get(key, "#eeeeee")
        ax.add_patch(FancyBboxPatch((x, y), 1.9, 0.9, boxstyle="round,pad=0.05", fc=colour, ec="0.3"))
        ax.text(x + 0.95, y + 0.45, text, ha="center", va="center", fontsize=9)
        centres[key] = (x + 0.95, y + 0.45)
    for start, end in [("input", "teacher"), ("input", "student"), ("teacher", "soft"),
                       ("student", "pred"), ("soft", "loss"), ("pred", "loss"), ("label", "loss")]:
        (x0, y0), (x1, y1) = centres[start], centres[end]
        ax.add_patch(FancyArrowPatch((x0 + 0.95, y0), (x1 - 0.95, y1), arrowstyle="-|>",
                                     mutation_scale=12, color="0.3"))
    ax.text(5.95, 3.85, "the teacher is frozen: no gradient flows into it", ha="center", fontsize=8,
            color="0.35")
    return fig


class LivePlot(Callback):
    """Redraws accuracy curves into an ``ipywidgets.Output`` while a run trains.

    The figure is built once per run; each redraw only moves the curves' data and renders
    the PNG again. Rendering is what costs (tens of milliseconds), so redraws are spaced
    so that drawing takes at most ``max_share`` of the time (measured as the run goes, at
    least ``min_interval`` seconds apart), and the last epoch is always drawn.
    """

    def __init__(self, output, *, label: str = "this run", metrics: Sequence[str] = ("train_acc", "val_acc"),
                 reference: Mapping[str, History] | None = None, title: str = "",
                 min_interval: float = 0.3, max_share: float = 0.1):
        self.output = output
        self.label, self.metrics, self.reference, self.title = label, tuple(metrics), reference, title
        self.min_interval, self.max_share = min_interval, max_share
        self._last_draw = 0.0
        self._draw_cost = 0.0
        self._figure = None
        self._lines: dict[str, object] = {}
        self.draws = 0
        self.drawing_seconds = 0.0

    def on_fit_start(self, model, epochs):
        self._last_draw = time.perf_counter()
        self._figure, self._lines = None, {}

    def on_epoch_end(self, history, model):
        wait = max(self.min_interval, self._draw_cost * (1 - self.max_share) / self.max_share)
        if time.perf_counter() - self._last_draw >= wait:
            self.draw(history)

    def on_fit_end(self, history):
        if len(history):
            self.draw(history)

    def draw(self, history: History) -> None:
        """Show the current curves, in one widget update.

        Swapping the whole ``outputs`` tuple (instead of clearing, then displaying) leaves
        no blank frame in between, and works the same in a kernel and in a test.
        """
        started = time.perf_counter()
        if self._figure is None or not self._has_lines_for(history):
            self._figure = plot_curves({self.label: history}, metrics=self.metrics, reference=self.reference,
                                       title=self.title)
            self._lines = {line.get_label(): line for line in self._figure.axes[0].get_lines()}
        else:
            self._move_lines(history)
        self.output.outputs = (png_output(self._figure),)
        self._draw_cost = time.perf_counter() - started
        self.drawing_seconds += self._draw_cost
        self._last_draw = time.perf_counter()
        self.draws += 1

    def _curves(self, history: History) -> dict[str, str]:
        """Legend label -> History key, for every curve of this run."""
        curves = {}
        for output in _outputs(history, self.metrics[0]):
            name = self.label if output is None else f"{self.label}: {output}"
            for metric in self.metrics:
                key = metric if output is None else f"{metric}/{output}"
                if _measured(history, key):
                    curves[f"{name} ({METRIC_LABELS.get(metric, metric)})"] = key
        return curves

    def _has_lines_for(self, history: History) -> bool:
        return set(self._curves(history)) <= set(self._lines)

    def _move_lines(self, history: History) -> None:
        for label, key in self._curves(history).items():
            self._lines[label].set_data(history.epochs_of(key), history.series(key))
        ax = self._figure.axes[0]
        ax.relim()
        ax.autoscale_view()


def png_output(fig: Figure) -> dict:
    """A figure as a Jupyter ``display_data`` output holding a PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": png, "text/plain": f"<Figure of {len(fig.axes)} axes>"}}
