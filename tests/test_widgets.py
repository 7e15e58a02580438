"""The experiment panel, driven from Python as a student would drive it in the browser."""
from __future__ import annotations

import base64
import csv
import io
import re
import time
import types

import ipywidgets
import pytest
import traitlets
import torch

from kdkit import widgets
from kdkit.experiments import start_here
from kdkit.experiments.runs import RunResult
from kdkit.train import History


def _fake_run(calls: list):
    """A run function that trains nothing: it reports three epochs to its callbacks."""
    def run(T, alpha, callbacks=()):
        if T > 50:
            raise ValueError("temperature T is too large for this test")
        calls.append((T, alpha))
        history = History()
        for callback in callbacks:
            callback.on_fit_start(None, 3)
        for epoch in range(1, 4):
            history.records.append({"epoch": epoch, "train_acc": 0.1 * epoch + alpha / 10,
                                    "val_acc": 0.1 * epoch, "train_loss": 1.0, "val_loss": 1.0})
            for callback in callbacks:
                callback.on_epoch_end(history, None)
        for callback in callbacks:
            callback.on_fit_end(history)
        return RunResult(config={"T": T, "alpha": alpha}, history=history, val_acc=0.3,
                         test_acc=0.25 + alpha / 10, seconds=0.01)
    return run


def click(panel):
    """Click Run as a student would, then wait for the background run to finish."""
    panel.button.click()
    panel.wait(timeout=120)
    assert not panel.running


def _panel(calls):
    return widgets.ExperimentPanel(_fake_run(calls), {"T": widgets.temperature_slider(4.0),
                                                      "alpha": widgets.alpha_slider(0.5)})


def _png_outputs(output: ipywidgets.Output) -> list[str]:
    return [o["data"]["image/png"] for o in output.outputs if "image/png" in o.get("data", {})]


def test_panel_is_a_widget_with_controls_button_plot_and_table():
    panel = _panel([])
    assert panel.button.description == "Run"
    assert panel.settings() == {"T": 4.0, "alpha": 0.5}
    assert panel.table.value == ""


def test_clicking_run_trains_draws_the_plot_and_adds_a_table_row():
    calls = []
    panel = _panel(calls)
    panel.controls["alpha"].value = 0.8
    click(panel)
    assert calls == [(4.0, 0.8)]
    assert len(_png_outputs(panel.plot)) == 1, "the live plot must show exactly one (the latest) figure"
    assert panel.table.value.count("<tr") == 2  # header + one run
    assert "0.8" in panel.table.value and "33.0%" in panel.table.value  # test acc 0.25 + 0.08
    assert "validation 30.0%" in panel.status.value
    assert not panel.button.disabled


def test_each_new_setting_adds_a_row_and_changes_the_plot():
    panel = _panel([])
    click(panel)
    first_png = _png_outputs(panel.plot)[0]
    panel.controls["alpha"].value = 0.1
    click(panel)
    assert panel.table.value.count("<tr") == 3
    assert _png_outputs(panel.plot)[0] != first_png


def test_revisiting_a_setting_uses_the_cache_instead_of_training():
    calls = []
    panel = _panel(calls)
    click(panel)
    panel.controls["alpha"].value = 0.2
    click(panel)
    panel.controls["alpha"].value = 0.5
    click(panel)
    assert calls == [(4.0, 0.5), (4.0, 0.2)]
    assert "run before" in panel.status.value
    assert panel.table.value.count("<tr") == 3



def test_a_setting_that_changes_nothing_does_not_train_again():
    """With alpha = 0 the temperature is irrelevant: the panel's ``effective`` drops it."""
    calls = []

    def effective(settings):
        return {"alpha": 0.0} if settings["alpha"] == 0 else settings

    def run(alpha, T=4.0, callbacks=()):
        return _fake_run(calls)(T, alpha, callbacks)

    panel = widgets.ExperimentPanel(run, {"T": widgets.temperature_slider(4.0), "alpha": widgets.alpha_slider(0.0)},
                                    effective=effective)
    click(panel)
    panel.controls["T"].value = 8.0
    click(panel)
    assert calls == [(4.0, 0.0)]
    assert "does not matter" in panel.status.value
    assert panel.table_rows() == [{**panel.table_rows()[0], "T": "-", "alpha": "0"}]


def test_the_reference_can_follow_the_settings():
    seen = []

    def reference(settings):
        seen.append(dict(settings))
        history = History()
        history.records.append({"epoch": 1, "train_acc": 0.5, "val_acc": settings["alpha"],
                                "train_loss": 1.0, "val_loss": 1.0})
        return {f"baseline for alpha {settings['alpha']:g}": history}

    panel = widgets.ExperimentPanel(_fake_run([]), {"T": widgets.temperature_slider(4.0),
                                                    "alpha": widgets.alpha_slider(0.5)}, reference=reference)
    click(panel)
    panel.controls["alpha"].value = 0.2
    click(panel)
    assert [s["alpha"] for s in seen] == [0.5, 0.2]


def test_the_table_names_the_teacher_a_run_used():
    def run(T, alpha, callbacks=()):
        result = _fake_run([])(T, alpha, callbacks)
        result.config["teacher"] = "CNN after 1 epochs"
        return result

    panel = widgets.ExperimentPanel(run, {"T": widgets.temperature_slider(4.0), "alpha": widgets.alpha_slider(0.5)})
    click(panel)
    assert panel.table_rows()[0]["teacher used"] == "CNN after 1 epochs"
    assert "teacher used" in panel.table_csv().splitlines()[0]

def test_button_is_disabled_while_a_run_is_going():
    seen = []
    panel = None

    def run(T, alpha, callbacks=()):
        seen.append(panel.button.disabled)
        return _fake_run([])(T, alpha, callbacks)

    panel = widgets.ExperimentPanel(run, {"T": widgets.temperature_slider(), "alpha": widgets.alpha_slider()})
    click(panel)
    assert seen == [True]
    assert panel.button.disabled is False


def test_a_bad_setting_shows_a_message_not_a_traceback():
    panel = _panel([])
    panel.controls["T"].value = 64.0
    result = panel.run()
    assert result is None
    assert "Cannot run" in panel.status.value and "too large" in panel.status.value
    assert panel.table.value == ""
    assert not panel.button.disabled


def test_an_interrupted_run_adds_nothing():
    def run(T, alpha, callbacks=()):
        raise KeyboardInterrupt

    panel = widgets.ExperimentPanel(run, {"T": widgets.temperature_slider(), "alpha": widgets.alpha_slider()})
    assert panel.run() is None
    assert "interrupted" in panel.status.value
    assert panel.results == {} and not panel.button.disabled


def test_sliders_are_bounded_to_sensible_ranges():
    T = widgets.temperature_slider()
    alpha = widgets.alpha_slider()
    T.value = 10_000
    alpha.value = 7
    assert T.value == 64 and alpha.value == 1.0
    T.value = 0.0001
    assert T.value == 0.5


def test_panel_with_the_real_start_here_run(mnist1d):
    """The notebook-00 panel end to end: a real (short) student run with cached logits."""
    from functools import partial

    logits = torch.randn(len(mnist1d.train), 10, generator=torch.Generator().manual_seed(0))
    data = mnist1d.replace(train=mnist1d.train.with_teacher_logits(logits))
    panel = widgets.ExperimentPanel(partial(start_here.student_run, data),
                                    {"T": widgets.temperature_slider(4), "alpha": widgets.alpha_slider(0.5),
                                     "seed": widgets.seed_picker(0)})
    result = panel.run()
    assert result is not None and len(result.history) == 60
    assert f"test {100 * result.test_acc:.1f}%" in panel.status.value
    assert f"<td>{100 * result.test_acc:.1f}%</td>" in panel.table.value
    assert len(_png_outputs(panel.plot)) == 1


def test_a_run_with_several_peers_adds_a_test_column_per_peer():
    def cohort_run(T, callbacks=()):
        history = History([{"epoch": 1, "train_acc": 0.5, "val_acc": 0.55, "val_acc/peer1": 0.5,
                            "val_acc/peer2": 0.6}])
        return RunResult(config={"T": T}, history=history, val_acc=0.55, test_acc=0.52, seconds=0.01,
                         test_acc_per_output={"peer1": 0.5, "peer2": 0.54})

    panel = widgets.ExperimentPanel(cohort_run, {"T": widgets.temperature_slider(2.0)})
    click(panel)
    assert "<th>test acc: peer1</th><th>test acc: peer2</th>" in panel.table.value
    assert "<td>50.0%</td><td>54.0%</td>" in panel.table.value


def _slow_run(epochs=200, pause=0.01):
    """A run that reports many short epochs, so that Stop can land in the middle of it."""
    def run(T, alpha, callbacks=()):
        from kdkit.train import FitInterrupted
        history = History()
        for callback in callbacks:
            callback.on_fit_start(None, epochs)
        try:
            for epoch in range(1, epochs + 1):
                time.sleep(pause)
                history.records.append({"epoch": epoch, "train_acc": 0.5, "val_acc": 0.4})
                for callback in callbacks:
                    callback.on_epoch_end(history, None)
        except KeyboardInterrupt:
            history.records.pop()
            raise FitInterrupted(history) from None
        for callback in callbacks:
            callback.on_fit_end(history)
        return RunResult(config={}, history=history, val_acc=0.4, test_acc=0.45, seconds=epochs * pause)
    return run


def _slow_panel():
    return widgets.ExperimentPanel(_slow_run(), {"T": widgets.temperature_slider(4.0),
                                                 "alpha": widgets.alpha_slider(0.5)})


def test_stop_ends_the_run_cleanly_and_adds_nothing():
    panel = _slow_panel()
    panel.button.click()
    deadline = time.monotonic() + 30
    while "epoch" not in panel.status.value and time.monotonic() < deadline:
        time.sleep(0.01)
    assert panel.running and panel.stop_button.disabled is False
    assert all(control.disabled for control in panel.controls.values()), "controls are locked while training"
    panel.button.click()                  # a double click queues nothing
    panel.stop_button.click()
    panel.wait(timeout=30)
    assert "stopped after" in panel.status.value
    assert panel.results == {} and panel.table.value == ""
    assert not any(control.disabled for control in panel.controls.values())
    assert panel.stop_button.disabled and not panel.button.disabled


def test_progress_and_the_estimate_from_the_last_run():
    panel = _slow_panel()
    click(panel)
    assert panel.last_seconds is not None and panel.last_seconds > 1.0
    panel.controls["alpha"].value = 0.25
    panel.button.click()
    deadline = time.monotonic() + 30
    seen = set()
    while panel.running and time.monotonic() < deadline:
        seen.add(panel.status.value)
        time.sleep(0.005)
    panel.wait()
    assert any("the last run took" in text for text in seen)
    assert any(re.search(r"epoch \d+ of 200, about \d+ s left", text) for text in seen)


def test_reset_clears_table_plot_and_downloads():
    panel = _panel([])
    click(panel)
    assert panel.table.value and panel.downloads.value and panel.plot.outputs
    panel.reset_button.click()
    assert panel.results == {} and panel.table.value == "" and panel.plot.outputs == ()
    assert panel.downloads.value == ""
    click(panel)
    assert panel.table.value.count("<tr") == 2, "a run after a reset is run 1 again"


def test_the_table_and_figure_download_in_one_click():
    panel = _panel([])
    click(panel)
    panel.controls["alpha"].value = 0.1
    click(panel)
    rows = list(csv.DictReader(io.StringIO(panel.table_csv())))
    assert [row["alpha"] for row in rows] == ["0.5", "0.1"]
    assert [float(row["test acc"]) for row in rows] == [0.3, 0.26]
    links = re.findall(r"download='([^']+)' href='data:([^;]+);base64,([^']+)'", panel.downloads.value)
    assert [(name, mime) for name, mime, _ in links] == [("kdkit-runs.csv", "text/csv"),
                                                         ("kdkit-figure.png", "image/png")]
    assert base64.b64decode(links[0][2]).decode() == panel.table_csv()
    assert base64.b64decode(links[1][2]).startswith(b"\x89PNG"), "the latest figure, as a PNG file"


def test_the_table_shows_what_the_controls_show():
    def run(loss, callbacks=()):
        return RunResult(config={}, history=History([{"epoch": 1, "train_acc": 0.5, "val_acc": 0.5}]),
                         val_acc=0.5, test_acc=0.5, seconds=0.0)

    loss = ipywidgets.Dropdown(options=[("L2 on logits", "l2_logits"), ("soft CE", "soft_ce")],
                               value="l2_logits", description="loss")
    panel = widgets.ExperimentPanel(run, {"loss": loss}, labels={"loss": "student loss"})
    click(panel)
    assert "<th>student loss</th>" in panel.table.value and "<td>L2 on logits</td>" in panel.table.value
    assert "l2_logits" not in panel.table.value


def test_a_panel_opened_without_a_kernel_says_what_to_do():
    assert "Run the cells above" in repr(_panel([]))
    bundle = _panel([])._repr_mimebundle_()
    assert "Run the cells above" in bundle["text/plain"]


def test_the_seed_picker_cannot_rewrite_a_typed_value():
    seed = widgets.seed_picker(3)
    assert list(seed.options) == list(range(50))
    for typed in ("3.7", 3.7, "1e3", 1000):
        with pytest.raises(traitlets.TraitError):
            seed.value = typed
    assert seed.value == 3


def test_the_live_plot_spaces_its_redraws_by_what_they_cost(monkeypatch):
    """On a clock the test controls: an epoch costs 20 ms, a redraw 50 ms (wall-clock timing
    would make the test depend on how busy the machine is)."""
    from kdkit import viz

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(viz, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    render = viz.png_output

    def slow_render(figure):
        clock.now += 0.05
        return render(figure)

    monkeypatch.setattr(viz, "png_output", slow_render)

    def drawing_time(**spacing) -> tuple[float, int]:
        live = viz.LivePlot(ipywidgets.Output(), **spacing)
        history = History()
        live.on_fit_start(None, 30)
        for epoch in range(1, 31):
            clock.now += 0.02  # an epoch of a small model
            history.records.append({"epoch": epoch, "train_acc": 0.5, "val_acc": 0.4})
            live.on_epoch_end(history, None)
        live.on_fit_end(history)
        return live.drawing_seconds, live.draws

    every_epoch, drawn_every = drawing_time(min_interval=0.0, max_share=1.0)
    assert drawn_every == 31 and every_epoch == pytest.approx(31 * 0.05)
    # Spaced: the first epoch (cost not known yet), then once 0.05 * 9 s of training have
    # passed (epoch 24), then the last epoch, which is always drawn.
    spaced, drawn_spaced = drawing_time(min_interval=0.0, max_share=0.1)
    assert drawn_spaced == 3 and spaced == pytest.approx(3 * 0.05)
    # The interval floor wins when drawing is cheap.
    _, drawn_floored = drawing_time(min_interval=0.19, max_share=1.0)
    assert drawn_floored == 4  # epochs 10, 20 and 30, and the last one again


def test_the_live_plot_draws_the_metrics_the_panel_names():
    calls = []
    panel = widgets.ExperimentPanel(_fake_run(calls), {"T": widgets.temperature_slider(4.0),
                                                       "alpha": widgets.alpha_slider(0.5)},
                                    metrics=("val_acc", "train_loss"))
    click(panel)
    assert panel._live_plot(panel.settings()).metrics == ("val_acc", "train_loss")
    assert _png_outputs(panel.plot)


def test_a_live_figure_redraws_when_a_control_moves():
    drawn = []
    slider = ipywidgets.FloatSlider(value=0.5)
    box = ipywidgets.Checkbox(value=True)

    def figure_of(settings):
        drawn.append(dict(settings))
        from kdkit.viz import plot_teacher_weights
        return plot_teacher_weights({"a": settings["w"] if settings["on"] else 0.0, "b": 1.0})

    output = widgets.LiveFigure({"w": slider, "on": box}, figure_of)
    assert drawn == [{"w": 0.5, "on": True}] and _png_outputs(output)
    slider.value = 0.2
    box.value = False
    assert drawn[-2:] == [{"w": 0.2, "on": True}, {"w": 0.2, "on": False}]
    assert "needs a running kernel" in repr(output)
