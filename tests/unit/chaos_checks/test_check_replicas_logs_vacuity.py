"""Replica digests, node logs and non-vacuity."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.check_logs import check_logs
from chaos.check_replicas import check_replicas
from chaos.check_vacuity import check_vacuity, leader_changes
from tests.unit.chaos_checks import drain, enqueue, msg, writer

# ---------------------------------------------------------------------------------------------------------------
# Replicas


def node(index: int, digest: str) -> dict[str, object]:
    return {"applied_index": index, "digest": digest}


def test_replicas_agreeing_in_a_later_sample_pass() -> None:
    samples = [
        {"n1": node(10, "aa"), "n2": node(9, "bb"), "n3": node(10, "aa")},  # n2 is catching up
        {"n1": node(12, "cc"), "n2": node(12, "cc"), "n3": node(12, "cc")},
    ]
    r = check_replicas(samples)
    assert r.valid and r.agreeing_sample == 1 and (r.agreed_index, r.agreed_digest) == (12, "cc")


def test_replicas_that_never_meet_fail() -> None:
    r = check_replicas([{"n1": node(10, "aa"), "n2": node(9, "bb")}, {"n1": node(11, "x"), "n2": node(10, "aa")}])
    assert not r.valid and r.agreeing_sample is None and r.last_disagreement is not None


def test_same_index_different_digest_is_divergence_even_if_they_agree_later() -> None:
    samples = [
        {"n1": node(10, "aa"), "n2": node(10, "ab"), "n3": node(10, "aa")},
        {"n1": node(12, "cc"), "n2": node(12, "cc"), "n3": node(12, "cc")},
    ]
    r = check_replicas(samples)
    assert not r.valid and r.agreeing_sample == 1
    assert [(d.sample, d.applied_index, d.digests) for d in r.divergences] == [
        (0, 10, {"n1": "aa", "n2": "ab", "n3": "aa"})
    ]


def test_a_missing_node_is_not_agreement() -> None:
    sample = {"n1": node(5, "aa"), "n2": node(5, "aa")}
    assert check_replicas(sample).valid  # a single sample is accepted as is
    r = check_replicas(sample, expected_nodes=["n1", "n2", "n3"])
    assert not r.valid and "n3" in (r.last_disagreement or "")
    assert not check_replicas([]).valid


def test_malformed_samples_are_rejected() -> None:
    with pytest.raises(ValueError, match="applied_index"):
        check_replicas({"n1": {"applied_index": "5", "digest": "aa"}})


# ---------------------------------------------------------------------------------------------------------------
# Logs


def test_clean_logs_pass(tmp_path: Path) -> None:
    (tmp_path / "n1.log").write_text("INFO started\nWARNING slow fsync\n")
    r = check_logs([tmp_path / "n1.log"])
    assert r.valid and r.files_scanned == 1 and r.hits == []


def test_tracebacks_and_critical_lines_are_reported_with_context(tmp_path: Path) -> None:
    (tmp_path / "n1.log").write_text(
        'INFO ok\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\nINFO after\n'
    )
    (tmp_path / "n2.log").write_text("".join(f"CRITICAL disk {i}\n" for i in range(8)))
    (tmp_path / "n3.log").write_text("INFO fine\n")
    r = check_logs([tmp_path / "n1.log", tmp_path / "n2.log", tmp_path / "n3.log"], context_lines=2)
    assert not r.valid and r.files_scanned == 3
    assert r.hit_counts == {str(tmp_path / "n1.log"): 1, str(tmp_path / "n2.log"): 8}
    first = r.hits[0]
    assert (first.line_number, first.line) == (2, "Traceback (most recent call last):")
    assert first.following == ['  File "x.py", line 1', "ValueError: boom"]
    assert len([h for h in r.hits if h.path.endswith("n2.log")]) == 5  # kept per file, all counted


def test_expected_lines_excuse_only_themselves(tmp_path: Path) -> None:
    refusal = "2026-11-22 06:54:11,366 CRITICAL raft_queue: refusing to start: journal damaged"
    (tmp_path / "n1.log").write_text(f"{refusal}\nINFO restarted\n{refusal}\n")
    r = check_logs([tmp_path / "n1.log"], expected=[refusal + "  "])
    assert r.valid and r.expected_hits == 2 and r.hits == []
    (tmp_path / "n1.log").write_text(f"{refusal}\nCRITICAL raft_queue: refusing to start: state ahead of log\n")
    r = check_logs([tmp_path / "n1.log"], expected=[refusal])
    assert not r.valid and r.expected_hits == 1 and [h.line_number for h in r.hits] == [2]


def test_a_missing_log_fails_unless_allowed(tmp_path: Path) -> None:
    r = check_logs([tmp_path / "nope.log"])
    assert not r.valid and r.missing == [str(tmp_path / "nope.log")]
    assert check_logs([tmp_path / "nope.log"], allow_missing=True).valid


# ---------------------------------------------------------------------------------------------------------------
# Non-vacuity


def test_a_run_with_a_healed_fault_work_and_a_drain_is_not_vacuous() -> None:
    w = writer()
    w.nemesis("start-fault", "kill leader")
    for i in range(5):
        enqueue(w, 1, f"v{i}")
    w.nemesis("stop-fault", "restart")
    drain(w, *(msg(f"v{i}") for i in range(5)))
    r = check_vacuity(
        w.events, min_ok_ops=5, min_ok_by_f={"enqueue": 5}, leaders=["n1", None, "n2"], min_leader_changes=1
    )
    assert r.valid, r.problems
    assert (r.faults, r.ok_ops, r.drains, r.leader_changes) == (1, 5, 1, 1)


def test_every_missing_ingredient_is_a_problem() -> None:
    w = writer()
    w.nemesis("start-fault", "partition")  # never healed
    enqueue(w, 1, "a")
    w.fail(w.invoke(2, "ack", "q", {"receipts": ["r"]}), "400")
    r = check_vacuity(w.events, min_ok_ops=10, min_ok_by_f={"ack": 1}, leaders=["n1", "n1"], min_leader_changes=2)
    assert not r.valid
    text = "\n".join(r.problems)
    for expected in [
        "no fault both started and stopped",
        "never stopped",
        "only 1 ok operations",
        "only 0 ok ack",
        "no ok drain",
        "only 0 leader changes",
    ]:
        assert expected in text
    assert "no leader observations" in "\n".join(check_vacuity(w.events, min_leader_changes=1).problems)


def test_unpaired_nemesis_events_are_a_problem_not_a_crash() -> None:
    w = writer()
    w.nemesis("stop-fault", "heal")
    drain(w)
    r = check_vacuity(w.events, min_ok_ops=0)
    assert not r.valid and "do not pair up" in r.problems[0]


@pytest.mark.parametrize(
    ("leaders", "changes"),
    [([], 0), (["a"], 0), (["a", "a", None, "b", "a"], 2), (["a", None, "a"], 0), ([None, "a", "b"], 1)],
)
def test_leader_changes(leaders: list[str | None], changes: int) -> None:
    assert leader_changes(leaders) == changes
