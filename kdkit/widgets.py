"""The experiment panel: controls, Run / Stop / Reset, a live plot and a table of runs.

The panel holds no maths. It calls a plain function ``run(**settings, callbacks=[...])``
that returns a :class:`kdkit.experiments.runs.RunResult`, the same function a notebook
first calls with fixed arguments. Training starts only when Run is clicked, never on a
slider tick; results are kept by the settings that produced them, so returning to a
setting is instant.

A run trains in a background thread, so the notebook stays responsive: **Stop** ends it
after the epoch under way, the controls are disabled while it trains (a slider moved in the
middle would end up next to a result it did not produce), and the status line counts the
epochs. The table and the latest figure can be downloaded with one click (CSV and PNG), for
a class to hand in and compare (:mod:`kdkit.classroom`).
"""
from __future__ import annotations

import base64
import csv
import html
import io
import textwrap
import threading
import time
from typing import Callable, Mapping

import ipywidgets as widgets

from kdkit.experiments.runs import RunResult
from kdkit.train import Callback, FitInterrupted, History
from kdkit.viz import LivePlot, png_output

NOT_LIVE = ("[kdkit playground: it needs a running kernel. Run the cells above (Run > Run All "
            "Cells), then this cell, to use it.]")


def temperature_slider(value: float = 4.0, *, description: str = "T") -> widgets.FloatLogSlider:
    """Temperature on a log scale from 0.5 to 64: equal steps are equal ratios."""
    return widgets.FloatLogSlider(value=value, base=2, min=-1, max=6, step=0.25, description=description,
                                  continuous_update=False, readout_format=".3g", style=_WIDE_LABEL)


def alpha_slider(value: float = 0.5, *, description: str = "alpha") -> widgets.FloatSlider:
    """Weight of the distillation term, from 0 (labels only) to 1 (teacher only)."""
    return widgets.FloatSlider(value=value, min=0.0, max=1.0, step=0.05, description=description,
                               continuous_update=False, readout_format=".2f", style=_WIDE_LABEL)


def seed_picker(value: int = 0) -> widgets.Dropdown:
    """The seed, 0 to 49, picked from a list: nothing can be typed, so "3.7" cannot silently
    become 37 (as it did in a number box)."""
    return widgets.Dropdown(options=list(range(50)), value=value, description="seed",
                            layout={"width": "150px"}, style=_WIDE_LABEL)


class LiveFigure(widgets.Output):
    """An output that shows ``figure_of(settings)`` and redraws it whenever a control moves (for
    a cheap picture of the settings, e.g. the teachers' weights; never for training)."""

    def __init__(self, controls: Mapping[str, widgets.ValueWidget], figure_of: Callable[[dict], object], **layout):
        super().__init__(**({"layout": layout} if layout else {}))
        self.controls, self.figure_of = dict(controls), figure_of
        for control in self.controls.values():
            control.observe(self.redraw, names="value")
        self.redraw()

    def redraw(self, _change=None) -> None:
        settings = {name: control.value for name, control in self.controls.items()}
        self.outputs = (png_output(self.figure_of(settings)),)

    def __repr__(self) -> str:
        # What a notebook shows when it is opened without a kernel (no widget state stored).
        return "[kdkit: a chart that follows the playground's controls; it needs a running kernel]"


_WIDE_LABEL = {"description_width": "initial"}  # a label is shown whole, never cut to "bottlenec..."


class ExperimentPanel(widgets.VBox):
    """Controls + Run/Stop/Reset + live curves + a growing table of runs, for one ``run``.

    ``run(**{name: control.value}, callbacks=[...])`` must return a RunResult.
    ``reference`` runs (e.g. the label-only baseline) are drawn faint behind each live plot:
    a mapping of name -> History, or a function of the settings that returns one (so the
    reference can follow the settings, e.g. the label-only run of the student chosen).
    ``labels`` names the controls in the table (default: each control's description).
    ``effective(settings)`` returns the settings that matter for this run (default: all of
    them): a setting it drops changes nothing, so moving it does not train again, and the
    table shows it as "-". If a result's config names a ``teacher``, the table shows it.
    ``metrics`` are the History keys the live plot draws (default: train and validation accuracy).
    """

    def __init__(self, run: Callable[..., RunResult], controls: Mapping[str, widgets.ValueWidget], *,
                 title: str = "",
                 reference: Mapping[str, History] | Callable[[dict], Mapping[str, History]] | None = None,
                 labels: Mapping[str, str] | None = None,
                 effective: Callable[[dict], dict] | None = None,
                 metrics: tuple[str, ...] = ("train_acc", "val_acc")):
        self.run_function = run
        self.metrics = tuple(metrics)
        self.controls = dict(controls)
        self.labels = {name: (labels or {}).get(name) or getattr(control, "description", "") or name
                       for name, control in self.controls.items()}
        self.reference = reference if callable(reference) else dict(reference or {})
        self.effective = effective or dict
        self.results: dict[tuple, RunResult] = {}
        self.order: list[tuple] = []
        self.last_seconds: float | None = None
        self.figure_png: bytes | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.button = widgets.Button(description="Run", button_style="primary", icon="play",
                                     tooltip="train with these settings")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                          tooltip="stop after the epoch under way")
        self.reset_button = widgets.Button(description="Reset", icon="trash",
                                           tooltip="clear the table and the plot")
        self.status = widgets.HTML(value="Set the controls, then click <b>Run</b>.")
        self.plot = widgets.Output(layout={"min_height": "260px"})
        self.table = widgets.HTML()
        self.downloads = widgets.HTML()
        self.button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())
        self.reset_button.on_click(lambda _button: self.reset())
        header = [widgets.HTML(f"<h4>{html.escape(title)}</h4>")] if title else []
        # Many knobs wrap onto several rows instead of running off the right edge.
        controls_row = widgets.HBox(list(self.controls.values()), layout={"flex_flow": "row wrap"})
        buttons = widgets.HBox([self.button, self.stop_button, self.reset_button, self.status],
                               layout={"flex_flow": "row wrap", "align_items": "center"})
        super().__init__(header + [controls_row, buttons, self.plot, self.table, self.downloads])
        self.add_class("kdkit-panel")  # a stable hook for styling and for the browser tests

    def __repr__(self) -> str:
        # What a notebook shows when it is opened without a kernel (no widget state stored).
        return NOT_LIVE

    def settings(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----------------------------------------------------------------------------------
    # Run, Stop, Reset
    # ----------------------------------------------------------------------------------

    def start(self) -> None:
        """What Run does: train with the current settings in a background thread.

        A second click while a run is going does nothing (the button is disabled, and a
        click that slips through is ignored).
        """
        if self.running:
            return
        self._thread = threading.Thread(target=self._run_in_background, name="kdkit-panel-run", daemon=True)
        self._thread.start()

    def _run_in_background(self) -> None:
        try:
            self.run()
        except Exception as error:  # noqa: BLE001 - shown in the panel; a thread has nowhere else
            self.status.value = (f"<span style='color:#b00'>The run failed: {html.escape(type(error).__name__)}: "
                                 f"{html.escape(str(error))}</span>")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run under way (if any) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stop(self) -> None:
        """What Stop does: end the run after the epoch under way; it adds nothing to the table."""
        self._stop.set()

    def reset(self) -> None:
        """What Reset does: forget every run of this panel, clear the table and the plot."""
        if self.running:
            return
        self.results.clear()
        self.order.clear()
        self.figure_png = None
        self.plot.outputs = ()
        self.table.value = ""
        self.downloads.value = ""
        self.status.value = "Cleared. Set the controls, then click <b>Run</b>."

    def run(self) -> RunResult | None:
        """Train with the current settings (or show the stored result), in this thread."""
        settings = self.effective(self.settings())
        key = tuple(sorted(settings.items()))  # the settings that run, whatever moves meanwhile
        if key in self.results:
            self._show(key, note="(shown again: these settings were run before; what changed "
                                 "does not matter here)", redraw=True)
            return self.results[key]
        self._stop.clear()
        self._set_busy(True)
        live = self._live_plot(settings)
        progress = _Progress(self.status, self._stop, self.last_seconds)
        started = time.perf_counter()
        try:
            result = self.run_function(**settings, callbacks=[live, progress])
        except FitInterrupted as stopped:
            self.status.value = (f"stopped after {len(stopped.history)} epochs; an unfinished run is not "
                                 "added to the table")
            return None
        except (ValueError, KeyError) as error:
            self.status.value = f"<span style='color:#b00'>Cannot run: {html.escape(str(error))}</span>"
            return None
        except KeyboardInterrupt:
            self.status.value = "interrupted: nothing was added to the table"
            return None
        finally:
            self._set_busy(False)
        self.last_seconds = time.perf_counter() - started
        self.figure_png = _png_bytes(self.plot)
        self.results[key] = result
        self.order.append(key)
        self._show(key, note=f"done in {self.last_seconds:.1f} s")
        return result

    def _set_busy(self, busy: bool) -> None:
        for control in self.controls.values():
            control.disabled = busy
        self.button.disabled = self.reset_button.disabled = busy
        self.stop_button.disabled = not busy

    def _show(self, key: tuple, *, note: str, redraw: bool = False) -> None:
        result = self.results[key]
        if redraw:
            self._live_plot(dict(key)).draw(result.history)
            self.figure_png = _png_bytes(self.plot)
        self.status.value = (f"validation {100 * result.val_acc:.1f}%, test {100 * result.test_acc:.1f}% "
                             f"{html.escape(note)}")
        self.table.value = self._table_html(current=key)
        self.downloads.value = self._downloads_html()

    def _live_plot(self, settings: dict) -> LivePlot:
        # The settings go in the title, wrapped: as a legend label they would crowd out the axes.
        reference = self.reference(settings) if callable(self.reference) else self.reference
        return LivePlot(self.plot, label="this run", reference=reference, metrics=self.metrics,
                        title=textwrap.fill(self._describe(settings), width=60))

    # ----------------------------------------------------------------------------------
    # The table and its downloads
    # ----------------------------------------------------------------------------------

    def table_rows(self) -> list[dict[str, str]]:
        """The table as rows of column -> text, in the order the runs were made."""
        outputs = list(dict.fromkeys(o for key in self.order for o in self.results[key].test_acc_per_output))
        rows = []
        for number, key in enumerate(self.order, start=1):
            result, settings = self.results[key], dict(key)
            row = {"run": str(number)}
            row.update({self.labels[n]: self._display(n, settings[n]) if n in settings else "-"
                        for n in self.controls})
            if any("teacher" in self.results[k].config for k in self.order):
                row["teacher used"] = str(result.config.get("teacher", "-"))
            row.update({"val acc": f"{100 * result.val_acc:.1f}%", "test acc": f"{100 * result.test_acc:.1f}%"})
            row.update({f"test acc: {o}": _percent(result.test_acc_per_output.get(o)) for o in outputs})
            row["seconds"] = f"{result.seconds:.1f}"
            rows.append(row)
        return rows

    def table_csv(self) -> str:
        """The table as CSV text (accuracies as fractions, so a spreadsheet can average them)."""
        buffer = io.StringIO()
        rows = self.table_rows()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _as_fraction(v) for k, v in row.items()})
        return buffer.getvalue()

    def _table_html(self, *, current: tuple) -> str:
        rows = self.table_rows()
        head = "".join(f"<th>{html.escape(column)}</th>" for column in rows[0])
        body = []
        for key, row in zip(self.order, rows):
            style = " style='background:#fff3c4'" if key == current else ""
            body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row.values()) + "</tr>")
        return (f"<table class='kdkit-runs'><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody></table>")

    def _downloads_html(self) -> str:
        links = [_download_link("kdkit-runs.csv", "text/csv", self.table_csv().encode(), "the table (CSV)")]
        if self.figure_png:
            links.append(_download_link("kdkit-figure.png", "image/png", self.figure_png, "the figure (PNG)"))
        return "Download: " + " · ".join(links)

    def _display(self, name: str, value) -> str:
        """A setting as the control shows it (a dropdown's label, not its internal value)."""
        control = self.controls[name]
        for option in getattr(control, "options", ()) or ():
            if isinstance(option, tuple) and len(option) == 2 and option[1] == value:
                return str(option[0])
        return _format(value)

    def _describe(self, settings: dict) -> str:
        return ", ".join(f"{self.labels[n]} = {self._display(n, v)}" for n, v in settings.items())


class _Progress(Callback):
    """Counts the epochs in the status line, with the time left; raises at epoch end on Stop."""

    def __init__(self, status: widgets.HTML, stop: threading.Event, last_seconds: float | None):
        self.status, self.stop, self.last_seconds = status, stop, last_seconds

    def on_fit_start(self, model, epochs):
        self.epochs, self.started = epochs, time.perf_counter()
        estimate = f" (the last run took {self.last_seconds:.1f} s)" if self.last_seconds else ""
        self.status.value = f"training{estimate}..."

    def on_epoch_end(self, history, model):
        if self.stop.is_set():
            raise KeyboardInterrupt  # fit rolls back to the last complete epoch
        done = len(history)
        left = (time.perf_counter() - self.started) / done * (self.epochs - done)
        self.status.value = f"training: epoch {done} of {self.epochs}, about {left:.0f} s left"


def _download_link(filename: str, mime: str, data: bytes, text: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f"<a download='{filename}' href='data:{mime};base64,{encoded}'>{html.escape(text)}</a>"


def _png_bytes(output: widgets.Output) -> bytes | None:
    for item in output.outputs:
        png = item.get("data", {}).get("image/png")
        if png:
            return base64.b64decode(png)
    return None


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _as_fraction(text: str) -> str:
    """"68.3%" -> "0.683" for the CSV; anything else unchanged."""
    if text.endswith("%"):
        try:
            return f"{float(text[:-1]) / 100:.4f}"
        except ValueError:
            return text
    return text


def _format(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
