"""The workload's choice of node: in turn, passing over a node that just failed the process (a settable clock)."""

from __future__ import annotations

from chaos.workload import Answer, Node, NodeChooser, node_failed

NODES = [Node("n1", "http://n1"), Node("n2", "http://n2"), Node("n3", "http://n3")]
OK = Answer("ok", 200, {}, None)
TIMEOUT = Answer("info", None, None, "timeout")
UNKNOWN = Answer("info", 503, {"code": "outcome_unknown"}, "503 outcome_unknown")
NO_LEADER = Answer("fail", 503, {"code": "no_leader", "retry": "safe"}, "503 no_leader")
REFUSED = Answer("fail", None, None, "connection refused")
NOT_FOUND = Answer("fail", 404, {"code": "queue_not_found"}, "404 queue_not_found")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ids(chooser: NodeChooser, count: int) -> list[str]:
    out = []
    for _ in range(count):
        node = chooser.next()
        chooser.answered(node, OK)
        out.append(node.node_id)
    return out


def test_the_nodes_are_taken_in_turn_from_the_first() -> None:
    assert ids(NodeChooser(NODES, 1, clock=Clock()), 4) == ["n2", "n3", "n1", "n2"]


def test_a_node_that_failed_is_passed_over_until_its_time_is_up() -> None:
    clock = Clock()
    chooser = NodeChooser(NODES, 0, avoid_s=3.5, clock=clock)
    chooser.answered(chooser.next(), TIMEOUT)  # n1
    assert ids(chooser, 4) == ["n2", "n3", "n2", "n3"]
    clock.now += 3.5
    assert ids(chooser, 3) == ["n1", "n2", "n3"]


def test_an_answer_from_the_node_ends_its_avoidance() -> None:
    clock = Clock()
    chooser = NodeChooser(NODES, 0, clock=clock)
    for _ in range(3):
        chooser.answered(chooser.next(), NO_LEADER)
        clock.now += 0.1
    # every node failed: the one whose avoidance ends first (n1), and an ok from it makes it usable again
    first = chooser.next()
    assert first.node_id == "n1"
    chooser.answered(first, OK)
    assert ids(chooser, 2) == ["n1", "n1"]  # n2 and n3 still avoided


def test_which_answers_count_as_the_node_failing() -> None:
    assert [node_failed(a) for a in (TIMEOUT, UNKNOWN, NO_LEADER, REFUSED)] == [True] * 4
    assert not node_failed(OK) and not node_failed(NOT_FOUND)  # a definite answer about the request
