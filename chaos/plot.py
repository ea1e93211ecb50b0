"""The run's picture, as Jepsen draws it: throughput and latency over time, with the nemesis's faults shaded.

:func:`plot_history` writes one PNG with two panels sharing the time axis (seconds since the recorder started):

- **top, throughput**: completions per second in each time bucket, one stair line per (``f``, outcome) that occurs
  (``enqueue ok``, ``receive info``, ...). Colour is the outcome (ok blue, fail red, info orange), the line style
  the operation kind. The bucket width is chosen so the run spans about :data:`TARGET_BUCKETS` buckets (a 1-2-5
  step: 0.1 s, 0.2 s, 0.5 s, 1 s, ...) unless ``bucket_s`` is given.
- **bottom, latency**: every completed operation as one point at its completion time, y = completion time minus
  invoke time in milliseconds on a log scale (latencies below :data:`LATENCY_FLOOR_MS` are drawn at the floor),
  coloured by outcome, marker by operation kind.

Every fault window (a ``start-fault`` and the ``stop-fault`` that ended it, paired by their ``id`` by
:func:`chaos.history.fault_windows`) is shaded in both panels from start to stop, with a dashed line at its start
(so even a zero-width window shows) and its label (the description's ``kind``, and ``node`` if one is named) at
the top of the throughput panel. A fault that never stopped is shaded to the end of the run, which is the time of
the last event in the history; its label ends in ``(not stopped)``.

Each fault's goodput recovery (:mod:`chaos.goodput`) is marked in the throughput panel: a bracket near the bottom
from where it was measured (the fault's start; an all-node fault's stop) to where the goodput was back, labelled with
the seconds (``back 2.5 s``), or, red, to the end of the run, labelled ``not back`` (``no baseline`` when there was
nothing to measure against, then at the start only).

Operations are paired by :func:`chaos.history.pair_operations`, the pairing every checker uses, so the counts in
the :class:`PlotSummary` match theirs; a malformed history raises :class:`chaos.history.HistoryError` as it does in
the checkers. An invoke with no completion (the history was cut) completed at no known time: it is neither a
point nor a throughput count, and is counted in ``PlotSummary.unfinished``.

An empty history, or one without client operations or without faults, still gives a picture: the panels are
drawn with their axes (the time axis 0-1 s for an empty history) and a "no operations recorded" note where there is
nothing to plot.

Matplotlib is used through :class:`matplotlib.figure.Figure` and the Agg canvas directly: no pyplot, no global
backend switch, safe to call from any thread. ``python -m chaos.plot history.jsonl [out.png]`` redraws the picture
of a recorded history.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from chaos.check_availability import describes_all_node_restart
from chaos.goodput import Recovery, measure_goodput
from chaos.history import Event, FaultWindow, Json, Operation, fault_windows, pair_operations, read_history

OUTCOMES: Final = ("ok", "fail", "info")
OUTCOME_COLOURS: Final = {"ok": "#2b83ba", "fail": "#d7191c", "info": "#f08a24"}
FAULT_COLOURS: Final = ("#9e9ac8", "#a1d99b", "#fdd0a2", "#9ecae1", "#fcbba1", "#d9d9d9", "#c7e9c0", "#dadaeb")
MARKERS: Final = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINE_STYLES: Final = ("-", "--", ":", "-.")
TARGET_BUCKETS: Final = 100
LATENCY_FLOOR_MS: Final = 0.01
FIGSIZE_IN: Final = (14.0, 9.0)
DPI: Final = 100
#: overlapping fault windows stack their labels downwards, this many deep, then start again at the top
_LABEL_LEVELS: Final = 6
RECOVERED_COLOUR: Final = "#1a9641"
NOT_RECOVERED_COLOUR: Final = "#a50026"


@dataclass(frozen=True)
class FaultSpan:
    """One shaded fault window, in seconds since the recorder started."""

    kind: str
    label: str
    start: float
    end: float
    #: False if no stop-fault ended it (shaded to the end of the run)
    stopped: bool
    id: Json


@dataclass(frozen=True)
class PlotSummary:
    """What :func:`plot_history` drew."""

    path: Path
    width_px: int
    height_px: int
    #: the time axis runs from 0 to this (the last event's time; 0 for an empty history)
    end_s: float
    bucket_s: float
    buckets: int
    #: completed client operations (each one latency point and one throughput count)
    operations: int
    #: completed operations by outcome: every one of "ok", "fail", "info" is a key
    by_outcome: dict[str, int]
    #: completed operations by f, then by outcome (only the outcomes that occur)
    by_f: dict[str, dict[str, int]]
    #: invokes without a completion: not drawn
    unfinished: int
    faults: tuple[FaultSpan, ...]
    #: the (f, outcome) throughput lines drawn, in legend order
    series: tuple[tuple[str, str], ...]
    #: completions per bucket of each drawn line (bucket i is [i * bucket_s, (i + 1) * bucket_s); the last bucket
    #: also holds completions at exactly end_s)
    counts: dict[tuple[str, str], tuple[int, ...]]
    #: the goodput recoveries marked, one per fault window
    recoveries: tuple[Recovery, ...] = ()


def nice_bucket(duration_s: float, target: int = TARGET_BUCKETS) -> float:
    """The smallest 1-2-5 step (..., 0.1, 0.2, 0.5, 1, 2, 5, 10, ...) that cuts ``duration_s`` into ``target``
    buckets or fewer; 1 s for a zero duration."""
    if duration_s <= 0:
        return 1.0
    raw = duration_s / target
    decade = 10.0 ** math.floor(math.log10(raw))
    for step in (1.0, 2.0, 5.0, 10.0):
        if step * decade >= raw * (1 - 1e-9):
            return step * decade
    return 10.0 * decade  # pragma: no cover - the loop ends at 10 * decade >= raw


def describe_fault(description: Json) -> tuple[str, str]:
    """(kind, label) of a fault description: a string is its own kind; an object's ``kind`` (else ``fault``,
    ``name``, ``description``) is the kind, and the label adds its ``node`` if it names one."""
    if isinstance(description, str):
        return description, description
    if isinstance(description, dict):
        kind = next(
            (v for k in ("kind", "fault", "name", "description") if isinstance(v := description.get(k), str)),
            "fault",
        )
        node = description.get("node")
        return kind, f"{kind} {node}" if isinstance(node, str) else kind
    return "fault", "fault"


def _span(window: FaultWindow, end_s: float) -> FaultSpan:
    kind, label = describe_fault(window.start.value)
    value = window.start.value
    fid = value.get("id") if isinstance(value, dict) else None
    if window.stop is None:
        return FaultSpan(kind, f"{label} (not stopped)", float(window.start.time), float(end_s), False, fid)
    return FaultSpan(kind, label, float(window.start.time), float(window.stop.time), True, fid)


def _escape(text: str) -> str:
    """Legend text is parsed for $...$ mathtext: keep a literal dollar literal."""
    return text.replace("$", r"\$")


def _shade(axes: Sequence[Axes], spans: Sequence[FaultSpan], colours: dict[str, str], label_axes: Axes) -> None:
    open_ends: list[float] = []  # label stacking: the ends of the windows still open when each one starts
    for span in spans:
        colour = colours[span.kind]
        for ax in axes:
            ax.axvspan(span.start, span.end, color=colour, alpha=0.35, linewidth=0, zorder=0)
            ax.axvline(span.start, color=colour, linestyle="--", linewidth=1.0, zorder=0.5)
        open_ends = [e for e in open_ends if e > span.start]
        level = len(open_ends) % _LABEL_LEVELS
        open_ends.append(span.end)
        label_axes.text(
            span.start,
            0.98 - 0.075 * level,
            f" {span.label}",
            transform=label_axes.get_xaxis_transform(),
            ha="left",
            va="top",
            fontsize=8,
            clip_on=True,
            parse_math=False,
            bbox={"facecolor": "white", "edgecolor": colour, "alpha": 0.8, "pad": 1.5},
            zorder=5,
        )


def recovery_label(recovery: Recovery) -> str:
    if recovery.threshold is None:
        return "no baseline"
    return "not back" if recovery.seconds is None else f"back {recovery.seconds:g} s"


def _mark_recoveries(top: Axes, recoveries: Sequence[Recovery], end_s: float) -> None:
    """A bracket per fault from where its recovery was measured to where the goodput was back (see the module
    docstring), stacked in two rows near the bottom of the throughput panel so that neighbours do not overlap."""
    for i, r in enumerate(recoveries):
        y = 0.04 + 0.06 * (i % 2)
        back = r.seconds is not None
        if r.seconds is not None:
            end = r.measured_from + r.seconds
        else:
            end = r.measured_from if r.threshold is None else end_s
        colour = RECOVERED_COLOUR if back else NOT_RECOVERED_COLOUR
        top.plot(
            [r.measured_from, end],
            [y, y],
            transform=top.get_xaxis_transform(),
            color=colour,
            linewidth=2.0,
            marker="|",
            markersize=9,
            clip_on=True,
            zorder=4,
        )
        top.text(
            end,
            y + 0.015,
            recovery_label(r),
            transform=top.get_xaxis_transform(),
            ha="right" if back else "left",
            va="bottom",
            fontsize=7,
            color=colour,
            clip_on=True,
            parse_math=False,
            zorder=5,
        )


def _no_data(ax: Axes, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        what,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="grey",
        fontsize=12,
        parse_math=False,
    )


def plot_history(
    events: Sequence[Event],
    out_path: Path,
    *,
    title: str,
    bucket_s: float | None = None,
) -> PlotSummary:
    """Draws ``events`` (a whole history) into the PNG ``out_path`` (its directory is created if missing)."""
    if bucket_s is not None and not bucket_s > 0:
        raise ValueError(f"bucket_s must be positive, got {bucket_s!r}")
    ops = pair_operations(events)
    done: list[tuple[Operation, Event]] = [(op, op.completion) for op in ops if op.completion is not None]
    end_s = float(max((e.time for e in events), default=0.0))
    bucket = bucket_s if bucket_s is not None else nice_bucket(end_s)
    buckets = max(1, math.ceil(end_s / bucket - 1e-9))
    spans = tuple(_span(w, end_s) for w in fault_windows(events))
    fs = sorted({op.f for op, _ in done})
    counts: dict[tuple[str, str], list[int]] = {}
    for op, completion in done:
        row = counts.setdefault((op.f, completion.type), [0] * buckets)
        row[min(buckets - 1, int(completion.time / bucket + 1e-9))] += 1
    series = tuple((f, o) for f in fs for o in OUTCOMES if (f, o) in counts)

    rows = [(k, counts[k]) for k in series]
    recoveries = tuple(measure_goodput(events, is_all_node=describes_all_node_restart).recoveries)
    width_px, height_px = _draw(
        out_path, title, done, rows, spans=spans, bucket=bucket, buckets=buckets, end_s=end_s, recoveries=recoveries
    )
    by_outcome = Counter(c.type for _, c in done)
    by_f: dict[str, dict[str, int]] = {}
    for op, c in done:
        row_f = by_f.setdefault(op.f, {})
        row_f[c.type] = row_f.get(c.type, 0) + 1
    return PlotSummary(
        path=out_path,
        width_px=width_px,
        height_px=height_px,
        end_s=end_s,
        bucket_s=bucket,
        buckets=buckets,
        operations=len(done),
        by_outcome={o: by_outcome.get(o, 0) for o in OUTCOMES},
        by_f=by_f,
        unfinished=len(ops) - len(done),
        faults=spans,
        series=series,
        counts={k: tuple(counts[k]) for k in series},
        recoveries=recoveries,
    )


#: op name -> (its line style in the top panel, its marker in the bottom one)
_Style = dict[str, tuple[str, str]]


def _draw(
    out_path: Path,
    title: str,
    done: list[tuple[Operation, Event]],
    rows: list[tuple[tuple[str, str], list[int]]],
    *,
    spans: tuple[FaultSpan, ...],
    bucket: float,
    buckets: int,
    end_s: float,
    recoveries: tuple[Recovery, ...] = (),
) -> tuple[int, int]:
    """Draws both panels (``rows``: the completions per bucket of each (op, outcome) that has any), the fault
    windows and the legends, and saves the PNG; returns its size in pixels."""
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    top = fig.add_subplot(2, 1, 1)
    bottom = fig.add_subplot(2, 1, 2, sharex=top)
    fig.suptitle(title, parse_math=False)
    fs = sorted({op.f for op, _ in done})
    style = {f: (LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)]) for i, f in enumerate(fs)}
    edges = [i * bucket for i in range(buckets + 1)]
    _draw_throughput(top, rows, edges, bucket, style)
    _draw_latency(bottom, done, style)
    if not done:
        bottom.set_ylim(1.0, 1000.0)
        for ax in (top, bottom):
            _no_data(ax, "no operations recorded")
    top.set_xlim(0.0, end_s if end_s > 0 else 1.0)
    colours: dict[str, str] = {}
    for span in spans:
        colours.setdefault(span.kind, FAULT_COLOURS[len(colours) % len(FAULT_COLOURS)])
    _shade((top, bottom), spans, colours, top)
    _mark_recoveries(top, recoveries, end_s)
    _legends(top, bottom, any_series=bool(rows), colours=colours, done=done, style=style)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png", dpi=DPI)
    return canvas.get_width_height()


def _draw_throughput(
    top: Axes, rows: list[tuple[tuple[str, str], list[int]]], edges: list[float], bucket: float, style: _Style
) -> None:
    """The top panel: completions per second of each (op, outcome), one line each."""
    for (f, outcome), row in rows:
        rates = [n / bucket for n in row]
        top.stairs(
            rates,
            edges,
            color=OUTCOME_COLOURS[outcome],
            linestyle=style[f][0],
            linewidth=1.4,
            label=_escape(f"{f} {outcome}"),
            zorder=2,
        )
    top.set_ylabel(f"throughput (ops/s, {bucket:g} s buckets)")
    top.set_ylim(bottom=0)
    top.grid(True, axis="y", alpha=0.3)
    top.tick_params(labelbottom=False)


def _draw_latency(bottom: Axes, done: list[tuple[Operation, Event]], style: _Style) -> None:
    """The bottom panel: each completion's latency at its time, coloured by outcome, marked by op."""
    for f in style:
        for outcome in OUTCOMES:
            pts = [(c, op) for op, c in done if op.f == f and c.type == outcome]
            if not pts:
                continue
            bottom.scatter(
                [c.time for c, _ in pts],
                [max(LATENCY_FLOOR_MS, (c.time - op.invoke.time) * 1000.0) for c, op in pts],
                s=9,
                marker=style[f][1],
                color=OUTCOME_COLOURS[outcome],
                alpha=0.6,
                linewidths=0,
                zorder=2,
            )
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel("time (s)")
    bottom.grid(True, which="major", axis="y", alpha=0.3)


def _legends(
    top: Axes,
    bottom: Axes,
    *,
    any_series: bool,
    colours: dict[str, str],
    done: list[tuple[Operation, Event]],
    style: _Style,
) -> None:
    """The top panel's legend (its lines and the fault kinds), and the bottom one's (outcomes and markers)."""
    if any_series or colours:
        handles, labels = top.get_legend_handles_labels()
        handles += [Patch(facecolor=c, alpha=0.6, label=_escape(k)) for k, c in colours.items()]
        labels += [_escape(k) for k in colours]
        top.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="completions")
    if done:
        keys: list[Line2D] = [
            Line2D([], [], linestyle="", marker="o", color=OUTCOME_COLOURS[o], label=o)
            for o in OUTCOMES
            if any(c.type == o for _, c in done)
        ]
        keys += [Line2D([], [], linestyle="", marker=style[f][1], color="black", label=_escape(f)) for f in style]
        bottom.legend(handles=keys, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="operations")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.plot", description="draw a recorded history's picture")
    parser.add_argument("history", type=Path, help="a history.jsonl")
    parser.add_argument("out", type=Path, nargs="?", help="the PNG (default: history.png next to the history)")
    parser.add_argument("--title", default=None, help="the picture's title (default: the history's path)")
    parser.add_argument("--bucket", type=float, default=None, help="throughput bucket in seconds (default: auto)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.history.with_name("history.png")
    summary = plot_history(read_history(args.history), out, title=args.title or str(args.history), bucket_s=args.bucket)
    print(
        f"{summary.path}: {summary.operations} operations "
        f"({', '.join(f'{o} {n}' for o, n in summary.by_outcome.items())}), {len(summary.faults)} fault windows"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
