"""Message ids (UUIDv7 layout, time-ordered) and the time/duration rendering helpers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest

from api.ids import MessageIdGenerator, timestamp_ms
from api.render import rfc3339, seconds

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _clock(*values: int) -> Callable[[], int]:
    it = iter(values)
    last = [values[-1]]

    def now() -> int:
        last[0] = next(it, last[0])
        return last[0]

    return now


def test_ids_are_uuid7_hex() -> None:
    new_id = MessageIdGenerator()
    ids = [new_id() for _ in range(100)]
    assert len(set(ids)) == 100
    for message_id in ids:
        assert HEX32.match(message_id)
        parsed = uuid.UUID(hex=message_id)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_ids_carry_their_time() -> None:
    new_id = MessageIdGenerator(clock_ms=lambda: 1_714_564_800_123)
    assert timestamp_ms(new_id()) == 1_714_564_800_123


def test_ids_increase_within_one_millisecond_and_across_counter_overflow() -> None:
    new_id = MessageIdGenerator(clock_ms=lambda: 5_000)
    ids = [new_id() for _ in range(10_000)]  # more than the 12-bit counter holds
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert timestamp_ms(ids[-1]) > 5_000  # borrowed from the next milliseconds rather than repeat


def test_ids_increase_when_the_clock_steps_back() -> None:
    new_id = MessageIdGenerator(clock_ms=_clock(10_000, 10_001, 9_000, 9_000, 10_002))
    ids = [new_id() for _ in range(5)]
    assert ids == sorted(ids)
    assert [timestamp_ms(i) for i in ids] == [10_000, 10_001, 10_001, 10_001, 10_002]


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_714_564_800_123, "2024-05-01T12:00:00.123Z"),
        (1_714_564_800_005, "2024-05-01T12:00:00.005Z"),
        (1_714_564_859_999, "2024-05-01T12:00:59.999Z"),
    ],
)
def test_rfc3339(ms: int, text: str) -> None:
    assert rfc3339(ms) == text


@pytest.mark.parametrize(("ms", "value"), [(30_000, 30), (1_234, 1.234), (1, 0.001), (0, 0)])
def test_seconds(ms: int, value: float) -> None:
    assert seconds(ms) == value
    assert isinstance(seconds(ms), int) == (ms % 1000 == 0)
