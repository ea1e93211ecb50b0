"""The journal's ``.meta`` file: currentTerm, votedForNodeId and raftCommitIndex, stored crash-safely.

Layout: b"RQMETA01" | u32 crc32(payload) | u32 len(payload) | payload (UTF-8 JSON object).
store() writes ``<path>.tmp``, fsyncs it, renames it over ``<path>`` and fsyncs the directory.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass

from raft_queue.node.raft.journal_format import JournalCorrupt, SyncFn, sync_directory, write_new_file

MAGIC = b"RQMETA01"
_PREFIX = struct.Struct("<8sII")


@dataclass(frozen=True)
class Meta:
    current_term: int = 0
    voted_for: str | None = None
    commit_index: int = 1


class MetaStore:
    def __init__(self, path: str, sync: SyncFn) -> None:
        self.path = path
        self._sync = sync

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self) -> Meta:
        """The stored values; defaults if the file does not exist, JournalCorrupt if it is damaged."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return Meta()
        if len(data) < _PREFIX.size:
            raise JournalCorrupt(f"{self.path}: offset 0: meta file truncated to {len(data)} bytes")
        magic, crc, size = _PREFIX.unpack_from(data)
        payload = data[_PREFIX.size :]
        if magic != MAGIC:
            raise JournalCorrupt(f"{self.path}: offset 0: bad meta magic {magic!r}")
        if size != len(payload) or crc != zlib.crc32(payload):
            raise JournalCorrupt(f"{self.path}: offset {_PREFIX.size}: meta checksum or length mismatch")
        try:
            fields = json.loads(payload)
            meta = Meta(fields["currentTerm"], fields["votedForNodeId"], fields["raftCommitIndex"])
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalCorrupt(f"{self.path}: offset {_PREFIX.size}: bad meta payload: {exc}") from exc
        if not (_is_count(meta.current_term) and _is_count(meta.commit_index)) or not isinstance(
            meta.voted_for, str | None
        ):
            raise JournalCorrupt(f"{self.path}: offset {_PREFIX.size}: bad meta values {fields!r}")
        return meta

    def store(self, meta: Meta) -> None:
        """Replace the file atomically and durably."""
        fields = {
            "currentTerm": meta.current_term,
            "votedForNodeId": meta.voted_for,
            "raftCommitIndex": meta.commit_index,
        }
        payload = json.dumps(fields, sort_keys=True).encode()
        tmp = self.path + ".tmp"
        write_new_file(tmp, [_PREFIX.pack(MAGIC, zlib.crc32(payload), len(payload)), payload], self._sync)
        os.replace(tmp, self.path)
        sync_directory(self.path, self._sync)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
