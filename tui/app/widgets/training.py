"""The Training tab's plot: loss and eval metrics from a trainer_state log history.

Losses (anything lower-is-better) go on the left axis and the other metrics (accuracy, F1...) on the
right, so a 0.9 F1 does not flatten a loss of 2.3. The legend is a line of its own above the plot, never
drawn over the curves. Sparse series (evaluations) get a marker on every point, so a run with one
evaluation still shows it. ``v`` picks which series are drawn, ``V`` smooths dense series (an exponential
moving average, as TensorBoard does).

The plot widget (textual-plotext, which imports plotext) is built the first time a training log is shown,
not at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from tui.core.text import lower_is_better, safe_text

Series = dict[str, tuple[list[float], list[float]]]  # name -> (steps, values)

# Colours plotext and rich both know by name, one per series in name order.
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")
SMOOTHING = 0.6  # EMA weight of the previous smoothed value
DENSE = 10  # a series with more points than this is drawn as a line only (and smoothed on request)
VIEWS = ("all", "losses", "metrics")  # then one view per series, by name


def training_series(state: dict | None) -> Series:
    """``{series: (steps, values)}`` for loss and every eval_* number in the trainer_state log history."""
    series: Series = {}
    for entry in (state or {}).get("log_history") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), (int, float)):
            continue
        for key, value in entry.items():
            if key in ("loss", "train_loss") or key.startswith("eval_"):
                if (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and "runtime" not in key
                    and "per_second" not in key
                ):
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(float(entry["step"]))
                    ys.append(float(value))
    return series


def smoothed(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, started at the first value (no bias towards zero)."""
    out: list[float] = []
    for value in values:
        out.append(value if not out else weight * out[-1] + (1 - weight) * value)
    return out


def views_of(series: Series) -> list[str]:
    """The views ``v`` steps through: all, losses, metrics (those that have series), then each one."""
    views = ["all"]
    if any(lower_is_better(n) for n in series) and not all(lower_is_better(n) for n in series):
        views += ["losses", "metrics"]
    return views + (sorted(series) if len(series) > 1 else [])


def selected(series: Series, view: str) -> Series:
    if view == "losses":
        return {n: s for n, s in series.items() if lower_is_better(n)}
    if view == "metrics":
        return {n: s for n, s in series.items() if not lower_is_better(n)}
    if view in series:
        return {view: series[view]}
    return dict(series)


@dataclass(frozen=True)
class Line:
    """One series as drawn: its colour, its axis, whether each point is marked."""

    name: str
    xs: list[float]
    ys: list[float]
    colour: str
    right: bool  # on the right axis (a metric plotted beside losses)
    points: bool  # sparse: every point marked


def lines(series: Series, view: str, smooth: bool) -> list[Line]:
    """What to draw for ``view``: losses left and metrics right when both are shown."""
    shown = selected(series, view)
    both = any(lower_is_better(n) for n in shown) and not all(lower_is_better(n) for n in shown)
    out = []
    for index, name in enumerate(sorted(series)):
        if name not in shown:
            continue
        xs, ys = shown[name]
        dense = len(xs) > DENSE
        out.append(
            Line(
                name,
                xs,
                smoothed(ys) if smooth and dense else ys,
                COLOURS[index % len(COLOURS)],
                right=both and not lower_is_better(name),
                points=not dense,
            )
        )
    return out


def legend(drawn: list[Line], view: str, smooth: bool) -> Text:
    """The key above the plot: each series in its colour and axis, then the keys that change it."""
    text = Text()
    for line in drawn:
        side = " (right)" if line.right else ""
        text.append("━ ", style=line.colour)
        text.append(f"{safe_text(line.name)}{side}   ")
    text.append(f"\nv: series ({safe_text(view)})   V: smoothing {'on' if smooth else 'off'}", style="dim")
    return text


def draw(plt, drawn: list[Line]) -> None:
    """Draw ``drawn`` on a plotext figure (textual-plotext's ``plot.plt``)."""
    plt.clear_data()
    plt.clear_figure()
    for line in drawn:
        side = "right" if line.right else "left"
        plt.plot(line.xs, line.ys, marker="braille", color=line.colour, yside=side)
        if line.points:
            plt.scatter(line.xs, line.ys, marker="o", color=line.colour, yside=side)
    if any(line.right for line in drawn):
        plt.ylabel("loss", yside="left")
        plt.ylabel("metric", yside="right")
    plt.xlabel("step")
