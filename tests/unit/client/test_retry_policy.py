"""Backoff arithmetic and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raft_queue_client import RetryPolicy
from raft_queue_client.retry import parse_retry_after


def test_the_waits_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=8, backoff_initial_s=0.1, backoff_max_s=1.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (30, 1.0)]:
        for _ in range(50):
            assert ceiling / 2 <= policy.delay_s(retry, None, rng) <= ceiling


def test_retry_after_is_a_floor_capped_at_backoff_max() -> None:
    policy = RetryPolicy(backoff_initial_s=0.01, backoff_max_s=2.0)
    rng = random.Random(1)
    assert policy.delay_s(1, 1.5, rng) == 1.5
    assert policy.delay_s(1, 60.0, rng) == 2.0
    assert 0.005 <= policy.delay_s(1, 0.0, rng) <= 0.01


def test_zero_backoff_is_allowed() -> None:
    assert RetryPolicy(backoff_initial_s=0, backoff_max_s=0).delay_s(3, None, random.Random()) == 0


@given(
    retry=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0, max_value=5),
    extra=st.floats(min_value=0, max_value=60),
    retry_after=st.none() | st.floats(min_value=0, max_value=10_000),
)
def test_a_wait_is_never_negative_nor_over_the_cap(
    retry: int, initial: float, extra: float, retry_after: float | None
) -> None:
    policy = RetryPolicy(backoff_initial_s=initial, backoff_max_s=initial + extra)
    delay = policy.delay_s(retry, retry_after, random.Random(retry))
    assert 0 <= delay <= policy.backoff_max_s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff_initial_s": -1}, "backoff_initial_s"),
        ({"backoff_initial_s": float("nan")}, "backoff_initial_s"),
        ({"backoff_initial_s": 1.0, "backoff_max_s": 0.5}, "backoff_max_s"),
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        ("3", 3.0),
        (" 2 ", 2.0),
        ("0.25", 0.25),
        ("-5", 0.0),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    in_ten = format_datetime(datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC), usegmt=True)
    past = format_datetime(datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(in_ten, now=now) == 10.0
    assert parse_retry_after(past, now=now) == 0.0
