"""SeekHints change how fast RocksKV finds keys, never which: RocksKV (with hints) against MemoryKV (without)."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine.kv import MemoryKV, WriteSet, prefix_end
from state_machine.rocks import RocksKV
from state_machine.seek_hints import SeekHints

PREFIXES = [b"R\x01", b"R\x02", b"T\x01", b""]
keys = st.builds(lambda p, tail: p + tail, st.sampled_from([b"R\x01", b"R\x02", b"T\x01"]), st.binary(max_size=3))
op = st.one_of(
    st.tuples(st.just("put"), keys),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("range"), keys, keys),
    st.tuples(st.just("scan"), st.sampled_from(PREFIXES), st.integers(0, 5), st.one_of(st.none(), keys)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=60))
def test_scans_with_hints_find_exactly_what_a_store_without_them_finds(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        rocks, memory = RocksKV(d), MemoryKV()
        try:
            for o in ops:
                if o[0] == "scan":
                    start, limit, end = o[1], o[2], o[3]
                    assert isinstance(start, bytes) and isinstance(limit, int)
                    stop = end if isinstance(end, bytes) else prefix_end(start)
                    got = [kv for _, kv in zip(range(limit), rocks.scan(start, stop), strict=False)]
                    want = [kv for _, kv in zip(range(limit), memory.scan(start, stop), strict=False)]
                    assert got == want
                    continue
                if o[0] == "put":
                    ws = WriteSet(writes={o[1]: b"v" + o[1]})  # type: ignore[operator,dict-item]
                elif o[0] == "delete":
                    ws = WriteSet(writes={o[1]: None})  # type: ignore[dict-item]
                else:
                    a, b = o[1], o[2]
                    assert isinstance(a, bytes) and isinstance(b, bytes)
                    ws = WriteSet(ranges=[(min(a, b), max(a, b))])
                rocks.commit(ws)
                memory.commit(ws)
            for p in PREFIXES:
                assert list(rocks.scan(p, prefix_end(p))) == list(memory.scan(p, prefix_end(p)))
        finally:
            rocks.close()


def test_a_put_before_the_hint_brings_the_hint_back() -> None:
    hints = SeekHints()
    hints.learned(b"R\x01", b"R\x01\x50")
    assert hints.seek(b"R\x01") == b"R\x01\x50"
    hints.wrote(b"R\x02\x00")  # another prefix
    hints.wrote(b"R\x01\x60")  # after the hint
    assert hints.seek(b"R\x01") == b"R\x01\x50"
    hints.wrote(b"R\x01\x10")
    assert hints.seek(b"R\x01") == b"R\x01\x10"


def test_a_first_key_outside_the_prefix_teaches_nothing() -> None:
    hints = SeekHints()
    hints.learned(b"R\x01", b"S")
    assert hints.seek(b"R\x01") == b"R\x01"
    hints.learned(b"R\x01", prefix_end(b"R\x01"))
    assert hints.seek(b"R\x01") == prefix_end(b"R\x01")


def test_consuming_from_the_front_does_not_make_scans_walk_the_tombstones() -> None:
    """Behaviour, not speed: after 20,000 front deletions a scan seeks straight to the live key (the hint),
    which is what makes the cost independent of how much was consumed."""
    with tempfile.TemporaryDirectory() as d:
        kv = RocksKV(d)
        try:
            p = b"R\x01"
            kv.commit(WriteSet(writes={p + i.to_bytes(4, "big"): b"" for i in range(20_001)}))
            for lo in range(0, 20_000, 100):
                first = next(kv.scan(p, prefix_end(p)))
                assert first[0] == p + lo.to_bytes(4, "big")
                kv.commit(WriteSet(writes={p + i.to_bytes(4, "big"): None for i in range(lo, lo + 100)}))
            assert kv._hints.seek(p) == p + (19_900).to_bytes(4, "big")
            assert next(kv.scan(p, prefix_end(p)))[0] == p + (20_000).to_bytes(4, "big")
            assert kv._hints.seek(p) == p + (20_000).to_bytes(4, "big")
        finally:
            kv.close()
