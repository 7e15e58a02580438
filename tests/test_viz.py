"""Static plots return figures and leave matplotlib's global state alone."""
from __future__ import annotations

import matplotlib
import pytest
import torch

from kdkit import viz
from kdkit.data import Split
from kdkit.train import History


def _history(n=5):
    return History([{"epoch": e, "train_acc": e / 10, "val_acc": e / 12} for e in range(1, n + 1)])


def test_plots_return_figures_without_leaving_open_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    split = Split(torch.randn(30, 40), torch.arange(30) % 3)
    figures = [viz.plot_examples(split, ["a", "b", "c"], per_class=2),
               viz.plot_curves({"run": _history()}, metrics=("train_acc", "val_acc"), reference={"base": _history()}),
               viz.plot_soft_targets(torch.tensor([3.0, 1.0, -2.0]), [1, 4], ["a", "b", "c"], true_class=0),
               viz.plot_kd_schematic()]
    assert [len(f.axes) for f in figures] == [6, 1, 2, 1]
    assert plt.get_fignums() == before


def test_soft_targets_plot_shows_the_softened_probabilities():
    fig = viz.plot_soft_targets(torch.tensor([2.0, 0.0]), [1.0, 1000.0], ["a", "b"])
    heights = [[bar.get_height() for bar in ax.patches] for ax in fig.axes]
    assert heights[0] == pytest.approx(torch.softmax(torch.tensor([2.0, 0.0]), 0).tolist())
    assert heights[1] == pytest.approx([0.5, 0.5], abs=1e-3)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_soft_targets_plot_rejects_bad_temperatures(bad):
    with pytest.raises(ValueError, match="temperature T"):
        viz.plot_soft_targets(torch.zeros(3), [bad], ["a", "b", "c"])


def test_plot_examples_of_images():
    split = Split(torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 0, 1, 0, 1]))
    fig = viz.plot_examples(split, ["x", "y"], per_class=2)
    assert len(fig.axes) == 4 and all(len(ax.images) == 1 for ax in fig.axes)
    assert [fig.axes[i].get_title() for i in (0, 1)] == ["x", "y"]


def test_live_plot_throttles_redraws_and_always_draws_the_end():
    import ipywidgets

    out = ipywidgets.Output()
    live = viz.LivePlot(out, min_interval=3600)
    history = _history(1)
    live.on_fit_start(None, 50)
    for epoch in range(2, 50):
        history.records.append({"epoch": epoch, "train_acc": 0.5, "val_acc": 0.5})
        live.on_epoch_end(history, None)
    assert live.draws == 0
    live.on_fit_end(history)
    assert live.draws == 1
    assert sum("image/png" in o.get("data", {}) for o in out.outputs) == 1


def test_importing_viz_does_not_change_matplotlib_settings():
    import subprocess
    import sys

    code = ("import matplotlib; before = dict(matplotlib.rcParams); import kdkit.viz, kdkit.widgets; "
            "after = dict(matplotlib.rcParams); print(before == after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_a_run_with_several_outputs_gets_one_curve_per_output():
    records = [{"epoch": e, "val_acc": 0.5, "val_acc/peer1": 0.4, "val_acc/peer2": 0.6} for e in (1, 2)]
    single = [{"epoch": e, "val_acc": 0.3} for e in (1, 2)]
    fig = viz.plot_curves({"DML": History(records), "alone": History(single)}, metrics=("val_acc",))
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["DML: peer1 (validation accuracy)", "DML: peer2 (validation accuracy)",
                                                    "alone (validation accuracy)"]
    assert [list(line.get_ydata()) for line in lines] == [[0.4, 0.4], [0.6, 0.6], [0.3, 0.3]]


def _stagewise_history():
    """Two feature stages (relative MSE only), then the classifier (validation accuracy only)."""
    records = [{"epoch": 1, "stage": "stem", "train_relative_mse": 0.9}, {"epoch": 2, "stage": "stem", "train_relative_mse": 0.4},
               {"epoch": 3, "stage": "stage1", "train_relative_mse": 0.7}, {"epoch": 4, "stage": "stage1", "train_relative_mse": 0.2},
               {"epoch": 5, "stage": "classifier", "val_acc": 0.6}, {"epoch": 6, "stage": "classifier", "val_acc": 0.8}]
    return History(records)


def test_a_metric_measured_in_some_steps_only_keeps_its_curve():
    fig = viz.plot_curves({"run": _stagewise_history()}, metrics=("train_relative_mse", "val_acc"))
    lines = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].get_lines()}
    assert lines == {"run (relative MSE to the teacher)": [1, 2, 3, 4], "run (validation accuracy)": [5, 6]}
    assert "relative MSE" in fig.axes[0].get_ylabel()


def test_live_plot_keeps_the_earlier_steps_curve_when_a_new_metric_appears():
    from ipywidgets import Output

    live = viz.LivePlot(Output(), metrics=("train_relative_mse", "val_acc"), min_interval=0.0, max_share=1.0)
    history = _stagewise_history()
    live.on_fit_start(None, 6)
    for n in range(1, 7):
        live.on_epoch_end(History(history.records[:n]), None)
    labels = {line.get_label() for line in live._figure.axes[0].get_lines()}
    assert labels == {"this run (relative MSE to the teacher)", "this run (validation accuracy)"}


def test_stage_losses_plot_draws_one_segment_per_stage_and_run():
    fig = viz.plot_stage_losses({"a": _stagewise_history(), "b": _stagewise_history()}, title="t")
    assert len(fig.axes[0].get_lines()) == 2 * 2 + 2             # two stages per run, two stage boundaries
    first = fig.axes[0].get_lines()[0]
    assert list(first.get_xdata()) == [0.5, 1.0]                # stage 0 spans (0, 1], whatever its epochs
    assert {t.get_text() for t in fig.axes[0].texts} == {"stem", "stage1"}


def test_differences_plot_marks_the_intervals_that_miss_zero():
    fig = viz.plot_differences({"tenth": {"x - labels": (0.1, 0.05, 0.15), "y - labels": (0.0, -0.02, 0.02)}})
    markers = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    filled = [m.get_markerfacecolor() != "white" for m in markers]
    assert filled == [True, False]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["y - labels (tenth)", "x - labels (tenth)"]


def test_views_plot_draws_one_panel_per_view_and_the_spectrum_as_bars():
    from kdkit.views import VIEWS

    x = torch.randn(40)
    fig = viz.plot_views(x, {name: view(x[None])[0] for name, view in VIEWS.items()}, title="t")
    assert [ax.get_title() for ax in fig.axes] == list(VIEWS)
    assert len(fig.axes[2].patches) == 21 and len(fig.axes[0].get_lines()) == 1


def test_teacher_weights_plot_shows_each_teachers_share():
    fig = viz.plot_teacher_weights({"a": 1.0, "b": 3.0, "c": 0.0})
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    assert widths == pytest.approx([0.25, 0.75, 0.0])
    empty = viz.plot_teacher_weights({"a": 0.0, "b": 0.0})
    assert [bar.get_width() for bar in empty.axes[0].patches] == [0.0, 0.0]
    assert "labels only" in empty.axes[0].get_xlabel()


def test_attention_maps_plot_draws_each_network_per_layer_across_the_whole_signal():
    maps = {"teacher": {"conv1": torch.rand(20), "conv3": torch.rand(5)}, "student": {"conv1": torch.rand(20)}}
    fig = viz.plot_attention_maps(maps, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["conv1", "conv3"]
    assert len(fig.axes[0].patches) == 2 and len(fig.axes[1].patches) == 1     # one step curve per network
    first = fig.axes[1].patches[0].get_path().vertices[:, 0]
    assert first.min() == pytest.approx(0.0) and first.max() == pytest.approx(1.0)


def test_matrices_plot_shares_one_colour_scale_and_reorders_the_examples():
    a, b = torch.arange(9.0).reshape(3, 3), torch.zeros(3, 3)
    fig = viz.plot_matrices({"a": a, "b": b}, order=torch.tensor([2, 1, 0]))
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert [im.get_clim() for im in images] == [(0.0, 8.0), (0.0, 8.0)]
    assert images[0].get_array()[0, 0] == 8.0                                  # row and column 2 first
