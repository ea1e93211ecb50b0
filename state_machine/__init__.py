"""The deterministic queue state machine: commands in, results out, state in an ordered KV (RocksDB)."""

from state_machine.commands import Entry, decode_entry, encode_entry
from state_machine.kv import KV, MemoryKV
from state_machine.machine import AppliedEntry, QueueStateMachine

__all__ = ["KV", "AppliedEntry", "Entry", "MemoryKV", "QueueStateMachine", "decode_entry", "encode_entry"]
