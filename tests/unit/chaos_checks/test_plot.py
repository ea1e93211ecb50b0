"""The run's picture: throughput and latency over time with the fault windows shaded, on hand-made histories."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from chaos.history import Event, HistoryError, HistoryWriter, write_history
from chaos.plot import (
    FAULT_COLOURS,
    NOT_RECOVERED_COLOUR,
    RECOVERED_COLOUR,
    FaultSpan,
    PlotSummary,
    describe_fault,
    main,
    nice_bucket,
    plot_history,
    recovery_label,
)
from tests.unit.chaos_checks import enq, enq_ok, msg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def assert_png(summary: PlotSummary) -> None:
    assert summary.path.is_file()
    assert png_size(summary.path) == (summary.width_px, summary.height_px)
    assert 800 <= summary.width_px <= 4000 and 500 <= summary.height_px <= 4000


def clocked() -> HistoryWriter:
    return HistoryWriter(clock=lambda: 0.0)


def busy_history() -> list[Event]:
    """10 s: ok/fail/info enqueues, receives and acks, an unfinished invoke, a stopped fault and an unstopped one."""
    w = clocked()
    e1 = w.invoke(1, "enqueue", "q", enq("a"), node="n1", at=0.5)
    w.ok(e1, enq_ok("a", "id-a"), at=0.52)
    r1 = w.invoke(2, "receive", "q", {"max_messages": 1}, node="n1", at=0.6)
    w.ok(r1, [msg("a")], at=0.65)
    a1 = w.invoke(2, "ack", "q", {"receipts": ["r-id-a-1"]}, node="n1", at=0.7)
    w.ok(a1, {"receipts": ["r-id-a-1"], "outcomes": ["acked"]}, at=0.8)
    w.nemesis("start-fault", {"id": "kill-leader-0", "kind": "kill-leader", "node": "n1"}, at=2.0)
    e2 = w.invoke(1, "enqueue", "q", enq("b"), node="n1", at=2.1)
    r2 = w.invoke(2, "receive", "q", {"max_messages": 1}, node="n1", at=2.2)
    w.fail(r2, "503 not applied", at=2.3)
    w.info(e2, "timeout", at=3.1)  # 1000 ms
    w.nemesis("stop-fault", {"id": "kill-leader-0", "kind": "restart", "node": "n1"}, at=4.0)
    e3 = w.invoke(1, "enqueue", "q", enq("c"), node="n2", at=4.5)
    w.ok(e3, enq_ok("c", "id-c"), at=4.6)
    w.nemesis("start-fault", {"id": "kill-all-1", "kind": "kill-all", "all_nodes": True}, at=7.0)
    w.invoke(3, "enqueue", "q", enq("d"), node="n3", at=7.5)  # the history was cut before its completion
    e4 = w.invoke(1, "enqueue", "q", enq("e"), node="n2", at=9.0)
    w.info(e4, "connection refused", at=10.0)
    return w.events


def test_a_busy_history_is_drawn_and_summarised(tmp_path: Path) -> None:
    s = plot_history(busy_history(), tmp_path / "out" / "history.png", title="kill-leader seed=1", bucket_s=1.0)
    assert_png(s)
    assert s.path == tmp_path / "out" / "history.png"
    assert s.end_s == pytest.approx(10.0) and s.bucket_s == 1.0 and s.buckets == 10
    assert s.operations == 7 and s.unfinished == 1
    assert s.by_outcome == {"ok": 4, "fail": 1, "info": 2}
    assert s.by_f == {
        "enqueue": {"ok": 2, "info": 2},
        "receive": {"ok": 1, "fail": 1},
        "ack": {"ok": 1},
    }
    assert s.series == (
        ("ack", "ok"),
        ("enqueue", "ok"),
        ("enqueue", "info"),
        ("receive", "ok"),
        ("receive", "fail"),
    )
    # completions by bucket: the enqueue info at 10.0 (the end of the run) lands in the last bucket
    assert s.counts[("enqueue", "ok")] == (1, 0, 0, 0, 1, 0, 0, 0, 0, 0)
    assert s.counts[("enqueue", "info")] == (0, 0, 0, 1, 0, 0, 0, 0, 0, 1)
    assert s.counts[("receive", "fail")] == (0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    assert sum(sum(c) for c in s.counts.values()) == s.operations
    assert s.faults == (
        FaultSpan("kill-leader", "kill-leader n1", 2.0, 4.0, True, "kill-leader-0"),
        FaultSpan("kill-all", "kill-all (not stopped)", 7.0, 10.0, False, "kill-all-1"),
    )


def test_stops_are_matched_to_starts_by_id_not_by_order(tmp_path: Path) -> None:
    w = clocked()
    w.nemesis("start-fault", {"id": "p", "kind": "partition"}, at=1.0)
    w.nemesis("start-fault", {"id": "k", "kind": "kill-leader", "node": "n2"}, at=2.0)
    w.nemesis("stop-fault", {"id": "k", "kind": "restart", "node": "n2"}, at=3.0)
    w.nemesis("stop-fault", {"id": "p", "kind": "heal"}, at=5.0)
    s = plot_history(w.events, tmp_path / "h.png", title="overlap")
    assert_png(s)
    assert [(f.kind, f.start, f.end, f.stopped) for f in s.faults] == [
        ("partition", 1.0, 5.0, True),
        ("kill-leader", 2.0, 3.0, True),
    ]
    assert s.operations == 0 and s.series == ()


def test_an_empty_history_still_gives_a_picture(tmp_path: Path) -> None:
    s = plot_history([], tmp_path / "empty.png", title="empty")
    assert_png(s)
    assert s.end_s == 0.0 and s.buckets == 1 and s.bucket_s == 1.0
    assert s.operations == 0 and s.unfinished == 0
    assert s.by_outcome == {"ok": 0, "fail": 0, "info": 0} and s.by_f == {}
    assert s.faults == () and s.series == () and s.counts == {}


def test_a_history_without_faults_still_gives_a_picture(tmp_path: Path) -> None:
    w = clocked()
    for i in range(20):
        inv = w.invoke(1, "enqueue", "q", enq(f"m{i}"), at=i * 0.5)
        w.ok(inv, enq_ok(f"m{i}", f"id-{i}"), at=i * 0.5 + 0.01)
    s = plot_history(w.events, tmp_path / "calm.png", title="no nemesis")
    assert_png(s)
    assert s.faults == ()
    assert s.by_outcome == {"ok": 20, "fail": 0, "info": 0}
    assert s.bucket_s == 0.1 and s.buckets == 96  # 9.51 s in about 100 buckets: 0.1 s
    assert sum(s.counts[("enqueue", "ok")]) == 20


def _shaded_columns(png: Path, colour: str, alpha: float = 0.35) -> npt.NDArray[np.bool_]:
    """Which pixel columns hold the fault colour blended over white (as axvspan draws it)."""
    img = imread(png)[:, :, :3].astype(np.float64)
    want = np.array([alpha * c + (1 - alpha) for c in to_rgb(colour)])
    matches = np.all(np.abs(img - want) < 0.02, axis=2)
    return np.asarray(matches.sum(axis=0) > 20)


def _half_faulted(stop: bool) -> list[Event]:
    w = clocked()
    inv = w.invoke(1, "enqueue", "q", enq("a"), at=0.1)
    w.ok(inv, enq_ok("a", "id-a"), at=0.2)
    w.nemesis("start-fault", {"id": 0, "kind": "pause-leader", "node": "n1"}, at=5.0)
    inv = w.invoke(1, "enqueue", "q", enq("b"), at=9.0)
    w.ok(inv, enq_ok("b", "id-b"), at=10.0)
    if stop:
        w.nemesis("stop-fault", {"id": 0, "kind": "resume", "node": "n1"}, at=10.0)
    return w.events


def test_fault_windows_are_shaded_and_an_unstopped_one_reaches_the_end(tmp_path: Path) -> None:
    stopped = plot_history(_half_faulted(stop=True), tmp_path / "stopped.png", title="t")
    unstopped = plot_history(_half_faulted(stop=False), tmp_path / "unstopped.png", title="t")
    without_fault = [e for e in _half_faulted(stop=False) if not e.is_nemesis]
    calm = plot_history(without_fault, tmp_path / "calm.png", title="t")
    assert calm.faults == () and [f.stopped for f in unstopped.faults] == [False]
    cols_stopped = _shaded_columns(stopped.path, FAULT_COLOURS[0])
    cols_unstopped = _shaded_columns(unstopped.path, FAULT_COLOURS[0])
    assert not _shaded_columns(calm.path, FAULT_COLOURS[0]).any()
    # the window 5 s..10 s of a 10 s run: about half the plot's width, the same whether or not it was stopped
    shaded = np.flatnonzero(cols_unstopped)
    assert 0.3 * stopped.width_px < shaded.size < 0.6 * stopped.width_px
    assert (shaded[-1] - shaded[0] + 1) == shaded.size  # one contiguous band
    assert np.array_equal(cols_stopped, cols_unstopped)


def test_a_picture_with_operations_differs_from_one_without(tmp_path: Path) -> None:
    events = busy_history()
    full = plot_history(events, tmp_path / "full.png", title="t")
    faults_only = plot_history([e for e in events if e.is_nemesis], tmp_path / "faults.png", title="t")
    a, b = imread(full.path), imread(faults_only.path)
    assert a.shape == b.shape and not np.array_equal(a, b)
    # latency points in the outcome colours are present only where operations were drawn
    info = np.array(to_rgb("#f08a24"))
    assert not np.any(np.all(np.abs(b[:, :, :3] - info) < 0.05, axis=2))
    assert np.any(np.all(np.abs(a[:, :, :3] - info) < 0.05, axis=2))


def _recovering() -> list[Event]:
    """10 ok enqueues per 0.5 s, a partition at 3 s that stops them until 5 s, then one at 6 s they never outlive."""
    w = clocked()
    n = 0
    for start, end in ((0.0, 3.0), (5.0, 6.0)):
        if start == 5.0:
            w.nemesis("stop-fault", {"id": "p0", "kind": "heal"}, at=4.0)
        for k in range(round((end - start) * 20)):
            t = start + k * 0.05
            inv = w.invoke(1, "enqueue", "q", enq(f"m{n}"), at=t)
            w.ok(inv, enq_ok(f"m{n}", f"id-m{n}"), at=t + 0.01)
            n += 1
        if start == 0.0:
            w.nemesis("start-fault", {"id": "p0", "kind": "partition-leader", "node": "n1"}, at=3.0)
    w.nemesis("start-fault", {"id": "p1", "kind": "partition-leader", "node": "n2"}, at=6.0)
    w.nemesis("stop-fault", {"id": "p1", "kind": "heal"}, at=8.0)
    return w.events


def _pixels(png: Path, colour: str) -> int:
    img = imread(png)[:, :, :3].astype(np.float64)
    return int(np.all(np.abs(img - np.array(to_rgb(colour))) < 0.03, axis=2).sum())


def test_each_faults_goodput_recovery_is_marked(tmp_path: Path) -> None:
    s = plot_history(_recovering(), tmp_path / "r.png", title="t")
    back, never = s.recoveries
    assert (back.measured_from, back.seconds) == (3.0, 2.5) and recovery_label(back) == "back 2.5 s"
    assert never.seconds is None and recovery_label(never) == "not back"
    assert _pixels(s.path, RECOVERED_COLOUR) > 50 and _pixels(s.path, NOT_RECOVERED_COLOUR) > 50
    calm = plot_history([e for e in _recovering() if not e.is_nemesis], tmp_path / "calm.png", title="t")
    assert calm.recoveries == () and _pixels(calm.path, RECOVERED_COLOUR) == 0


def test_malformed_histories_and_bad_buckets_are_refused(tmp_path: Path) -> None:
    w = clocked()
    w.nemesis("stop-fault", {"id": 1, "kind": "heal"}, at=1.0)
    with pytest.raises(HistoryError, match="ends no open fault"):
        plot_history(w.events, tmp_path / "x.png", title="t")
    with pytest.raises(ValueError, match="bucket_s"):
        plot_history([], tmp_path / "x.png", title="t", bucket_s=0.0)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("duration", "bucket"),
    [(0.0, 1.0), (9.51, 0.1), (10.0, 0.1), (30.0, 0.5), (60.0, 1.0), (150.0, 2.0), (1000.0, 10.0), (0.05, 0.0005)],
)
def test_bucket_widths_are_round_and_give_at_most_100_buckets(duration: float, bucket: float) -> None:
    assert nice_bucket(duration) == pytest.approx(bucket)
    if duration:
        assert duration / nice_bucket(duration) <= 100 + 1e-9


def test_fault_labels() -> None:
    assert describe_fault({"id": 3, "kind": "kill-leader", "node": "n2"}) == ("kill-leader", "kill-leader n2")
    assert describe_fault({"fault": "partition", "minority": ["n1"]}) == ("partition", "partition")
    assert describe_fault("kill all $x") == ("kill all $x", "kill all $x")
    assert describe_fault({"id": 1}) == ("fault", "fault")
    assert describe_fault(None) == ("fault", "fault")


def test_the_command_line_redraws_a_recorded_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = tmp_path / "run" / "history.jsonl"
    history.parent.mkdir()
    write_history(history, busy_history())
    assert main([str(history)]) == 0
    assert png_size(tmp_path / "run" / "history.png")[0] > 0
    assert "7 operations (ok 4, fail 1, info 2), 2 fault windows" in capsys.readouterr().out
