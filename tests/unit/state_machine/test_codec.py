"""The entry codec: round trips, garbage, truncation and the version byte."""

from __future__ import annotations

import typing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_machine.commands import (
    CODEC_VERSION,
    AbortTxn,
    Ack,
    Barrier,
    BeginTxn,
    CodecError,
    Command,
    CommitTxn,
    CreateQueue,
    DeleteQueue,
    Enqueue,
    Entry,
    Extend,
    Nack,
    NewMessage,
    Receive,
    StageTxn,
    Transact,
    TxnOp,
    UnsupportedVersion,
    decode_entry,
    encode_entry,
    fingerprint,
    txn_fingerprint,
)
from state_machine.config import QueueConfig

CI = settings(derandomize=True, database=None, max_examples=200, deadline=None)

# msgpack integers: what msgspec encodes and decodes losslessly
ints = st.integers(-(2**63), 2**64 - 1)
small_text = st.text(max_size=12)
short_bytes = st.binary(max_size=24)

configs = st.builds(
    QueueConfig,
    visibility_timeout_ms=ints,
    max_deliveries=ints,
    dead_letter_queue=st.none() | small_text,
    max_length=ints,
    dedup_window_ms=ints,
    max_message_bytes=ints,
)
new_messages = st.builds(
    NewMessage,
    message_id=small_text,
    body=short_bytes,
    attributes=st.dictionaries(small_text, small_text, max_size=3),
    delay_ms=ints,
    idempotency_key=st.none() | small_text,
    fingerprint=short_bytes,
)
receipts = st.lists(small_text, max_size=3)
enqueues = st.builds(Enqueue, queue=small_text, messages=st.lists(new_messages, max_size=3))
acks = st.builds(Ack, queue=small_text, receipts=receipts)
nacks = st.builds(Nack, queue=small_text, receipts=receipts, delay_ms=ints)
extends = st.builds(Extend, queue=small_text, receipts=receipts, visibility_timeout_ms=ints)
txn_ops: st.SearchStrategy[list[TxnOp]] = st.lists(st.one_of(enqueues, acks, nacks, extends), max_size=3)
BY_TYPE: dict[type, st.SearchStrategy[Command]] = {
    CreateQueue: st.builds(CreateQueue, name=small_text, config=configs),
    DeleteQueue: st.builds(DeleteQueue, name=small_text),
    Enqueue: enqueues,
    Receive: st.builds(
        Receive,
        queue=small_text,
        max_messages=ints,
        visibility_timeout_ms=st.none() | ints,
        receive_attempt_id=st.none() | small_text,
    ),
    Ack: acks,
    Nack: nacks,
    Extend: extends,
    Barrier: st.just(Barrier()),
    Transact: st.builds(Transact, transaction_id=small_text, fingerprint=short_bytes, ops=txn_ops, retention_ms=ints),
    BeginTxn: st.builds(BeginTxn, transaction_id=small_text, timeout_ms=ints, retention_ms=ints),
    StageTxn: st.builds(StageTxn, transaction_id=small_text, stage_seq=ints, fingerprint=short_bytes, ops=txn_ops),
    CommitTxn: st.builds(CommitTxn, transaction_id=small_text),
    AbortTxn: st.builds(AbortTxn, transaction_id=small_text),
}
commands: st.SearchStrategy[Command] = st.one_of(*BY_TYPE.values())
entries = st.builds(Entry, now_ms=ints, ops=st.lists(commands, max_size=5))


def decodes_or_codec_error(data: bytes) -> Entry | None:
    """decode_entry's only allowed outcomes for bytes with our version: an Entry or CodecError."""
    try:
        return decode_entry(data)
    except CodecError:
        return None


@CI
@given(entries)
def test_every_entry_round_trips(entry: Entry) -> None:
    data = encode_entry(entry)
    assert data[0] == CODEC_VERSION
    assert decode_entry(data) == entry
    assert encode_entry(decode_entry(data)) == data  # re-encoding is byte-identical


def test_the_strategies_cover_every_command_type() -> None:
    assert set(BY_TYPE) == set(typing.get_args(Command))


@pytest.mark.parametrize("type_name", sorted(t.__name__ for t in BY_TYPE))
def test_each_command_type_round_trips_alone(type_name: str) -> None:
    (command_type,) = [t for t in BY_TYPE if t.__name__ == type_name]

    @settings(CI, max_examples=50)
    @given(BY_TYPE[command_type])
    def check(command: Command) -> None:
        entry = Entry(1, [command])
        decoded = decode_entry(encode_entry(entry))
        assert decoded == entry and type(decoded.ops[0]) is command_type

    check()


def test_defaults_survive_the_round_trip() -> None:
    entry = Entry(
        5, [Receive("q"), Nack("q", ["r"]), Enqueue("q", [NewMessage("m", b"")]), CreateQueue("q", QueueConfig())]
    )
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    receive = decoded.ops[0]
    assert isinstance(receive, Receive) and (receive.max_messages, receive.visibility_timeout_ms) == (1, None)
    assert receive.receive_attempt_id is None


def test_version_1_entries_still_decode() -> None:
    """Entries written before version 2 (in journals and snapshots) lack Receive's trailing attempt ID."""
    v1_body = msgspec.msgpack.encode(
        [
            1234,
            [
                ["cq", "q", [30_000, 0, None, 0, 86_400_000, 1_048_576]],
                ["eq", "q", [["m1", b"body", {"a": "b"}, 0, "key", b"fp"]]],
                ["rc", "q", 2, None],
                ["rc", "q", 1, 5000],
                ["ak", "q", ["r1"]],
                ["nk", "q", ["r2"], 10],
                ["ex", "q", ["r3"], 100],
                ["br"],
                ["dq", "q"],
            ],
        ]
    )
    assert decode_entry(b"\x01" + v1_body) == Entry(
        1234,
        [
            CreateQueue("q", QueueConfig()),
            Enqueue("q", [NewMessage("m1", b"body", {"a": "b"}, 0, "key", b"fp")]),
            Receive("q", 2, None, None),
            Receive("q", 1, 5000),
            Ack("q", ["r1"]),
            Nack("q", ["r2"], 10),
            Extend("q", ["r3"], 100),
            Barrier(),
            DeleteQueue("q"),
        ],
    )
    # and the same commands re-encode as version 2, which decodes to the same entry
    entry = decode_entry(b"\x01" + v1_body)
    assert decode_entry(encode_entry(entry)) == entry and encode_entry(entry)[0] == 2


def test_transaction_commands_round_trip_with_nested_ops() -> None:
    ops: list[TxnOp] = [
        Enqueue("q", [NewMessage("m", b"x", {}, 0, "k", b"fp")]),
        Ack("q", ["r1"]),
        Nack("q", ["r2"], 5),
        Extend("q", ["r3"], 10),
    ]
    entry = Entry(
        7,
        [
            Transact("t1", txn_fingerprint(ops), ops, 60_000),
            BeginTxn("t2", 30_000, 60_000),
            StageTxn("t2", 1, txn_fingerprint(ops[:1]), ops[:1]),
            CommitTxn("t2"),
            AbortTxn("t3"),
            Receive("q", 3, None, "attempt-1"),
        ],
    )
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    tx = decoded.ops[0]
    assert isinstance(tx, Transact) and [type(o) for o in tx.ops] == [Enqueue, Ack, Nack, Extend]


def test_txn_fingerprint_ignores_message_ids_and_sees_everything_else() -> None:
    def enq(mid: str, body: bytes = b"x", key: str | None = "k") -> Enqueue:
        return Enqueue("q", [NewMessage(mid, body, {}, 0, key, fingerprint(body, {}, 0))])

    base: list[TxnOp] = [enq("m1"), Ack("q", ["r1"])]
    fp = txn_fingerprint(base)
    assert len(fp) == 16
    assert txn_fingerprint([enq("other-id"), Ack("q", ["r1"])]) == fp  # a retry generates new message IDs
    others: list[list[TxnOp]] = [
        [enq("m1", b"y"), Ack("q", ["r1"])],
        [enq("m1", key=None), Ack("q", ["r1"])],
        [enq("m1"), Ack("q", ["r2"])],
        [enq("m1"), Nack("q", ["r1"])],
        [enq("m1"), Extend("q", ["r1"], 10)],
        [Ack("q", ["r1"]), enq("m1")],  # order matters
        [enq("m1")],
        [enq("m1"), Ack("q", ["r1"]), Ack("q", ["r1"])],
        [enq("m1"), Ack("other", ["r1"])],
    ]
    for other in others:
        assert txn_fingerprint(other) != fp, other
    assert txn_fingerprint([Nack("q", ["r"], 1)]) != txn_fingerprint([Nack("q", ["r"], 2)])
    # a message without a precomputed fingerprint is digested from its payload
    bare = Enqueue("q", [NewMessage("m", b"x", {}, 0, "k")])
    assert txn_fingerprint([bare]) == txn_fingerprint([enq("m1")])


@CI
@given(entries, st.data())
def test_every_truncation_is_a_codec_error(entry: Entry, data: st.DataObject) -> None:
    encoded = encode_entry(entry)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(CodecError):
        decode_entry(encoded[:cut])


def test_all_truncations_of_one_rich_entry() -> None:
    entry = Entry(
        123,
        [
            CreateQueue("q", QueueConfig(max_deliveries=2, dead_letter_queue="dl")),
            Enqueue("q", [NewMessage("m", b"body", {"a": "b"}, 5, "key", b"fp")]),
            Ack("q", ["r1", "r2"]),
            Barrier(),
        ],
    )
    encoded = encode_entry(entry)
    for cut in range(len(encoded)):
        with pytest.raises(CodecError):
            decode_entry(encoded[:cut])


@CI
@given(st.binary(max_size=64))
def test_random_bytes_after_our_version_decode_or_raise_codec_error(tail: bytes) -> None:
    result = decodes_or_codec_error(bytes((CODEC_VERSION,)) + tail)
    assert result is None or isinstance(result, Entry)


@CI
@given(entries, st.data())
def test_a_damaged_entry_decodes_or_raises_codec_error(entry: Entry, data: st.DataObject) -> None:
    encoded = bytearray(encode_entry(entry))
    at = data.draw(st.integers(1, len(encoded) - 1)) if len(encoded) > 1 else 0
    if at == 0:
        return
    encoded[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        encoded += data.draw(st.binary(min_size=1, max_size=8))
    result = decodes_or_codec_error(bytes(encoded))
    assert result is None or isinstance(result, Entry)


@pytest.mark.parametrize(
    "tail",
    [
        b"\xc1",  # never used in msgpack
        b"\x92\x01",  # array of 2, one missing
        b"\x92\xa1x\x90",  # now_ms is a string
        b"\x92\x01\x91\x91\xa2zz",  # unknown command tag
        b"\x92\x01\x90\x00",  # trailing byte
        b"\x92\xcf" + b"\xff" * 8 + b"\x90",  # u64 max is fine (decodes) ...
        b"\x92\xcb" + b"\x00" * 8 + b"\x90",  # ... a float is not
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
        b"\x92\x01\x91\x92\xa2dq\xa3\xed\xa0\x80",  # a surrogate encoded in a name: not UTF-8
    ],
)
def test_known_garbage(tail: bytes) -> None:
    data = bytes((CODEC_VERSION,)) + tail
    if tail.startswith(b"\x92\xcf"):
        assert decode_entry(data) == Entry(2**64 - 1, [])
    else:
        with pytest.raises(CodecError):
            decode_entry(data)


def test_the_version_byte() -> None:
    body = encode_entry(Entry(1, [Barrier()]))[1:]
    with pytest.raises(CodecError):
        decode_entry(b"")
    with pytest.raises(CodecError):  # an older, retired version: garbage, not a reason to stop
        decode_entry(b"\x00" + body)
    for version in (CODEC_VERSION + 1, 0x7F, 0xFF):
        with pytest.raises(UnsupportedVersion) as exc:
            decode_entry(bytes((version,)) + body)
        assert exc.value.version == version
        assert str(CODEC_VERSION) in str(exc.value)
    with pytest.raises(UnsupportedVersion):  # the version is checked before the body
        decode_entry(bytes((CODEC_VERSION + 1,)))
    # the machine relies on these two never being confused
    assert issubclass(CodecError, ValueError) and not issubclass(UnsupportedVersion, CodecError)


@CI
@given(short_bytes, st.dictionaries(small_text, small_text, max_size=3), st.integers(0, 900_000))
def test_fingerprint_depends_on_payload_only(body: bytes, attributes: dict[str, str], delay: int) -> None:
    fp = fingerprint(body, attributes, delay)
    assert len(fp) == 16
    assert fingerprint(body, dict(reversed(list(attributes.items()))), delay) == fp
    assert fingerprint(body + b"x", attributes, delay) != fp
    assert fingerprint(body, attributes, delay + 1) != fp
    assert fingerprint(body, {**attributes, "\x00new": ""}, delay) != fp


def test_fingerprint_is_unambiguous_at_field_boundaries() -> None:
    assert fingerprint(b"ab", {}, 0) != fingerprint(b"a", {"b": ""}, 0)
    assert fingerprint(b"", {"ab": "c"}, 0) != fingerprint(b"", {"a": "bc"}, 0)
    assert fingerprint(b"", {"a": "b", "c": "d"}, 0) != fingerprint(b"", {"a": "bc", "": "d"}, 0)
