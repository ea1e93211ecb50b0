"""Toxic specifications: the types Toxiproxy knows, their attributes, validation and JSON shape.

What each type does to the bytes lives in ``chaos.proxy_link``; this module only checks and stores settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from chaos.proxy_errors import INVALID_STREAM, INVALID_TOXIC_TYPE, ApiError, bad_request

#: Toxic type -> its attributes (all integers, default 0), as in Toxiproxy 2.x.
TOXIC_TYPES: dict[str, tuple[str, ...]] = {
    "noop": (),
    "latency": ("latency", "jitter"),  # ms
    "bandwidth": ("rate",),  # KB/s; 0 = unlimited
    "slow_close": ("delay",),  # ms
    "timeout": ("timeout",),  # ms; 0 = forever
    "reset_peer": ("timeout",),  # ms
    "slicer": ("average_size", "size_variation", "delay"),  # bytes, bytes, microseconds
    "limit_data": ("bytes",),
}
STREAMS = ("upstream", "downstream")


@dataclass(frozen=True)
class Toxic:
    """One toxic as configured on a proxy."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]

    @classmethod
    def from_json(cls, body: object) -> Toxic:
        """Builds a toxic from a create request; defaults: downstream, toxicity 1, name ``<type>_<stream>``."""
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        stream = body.get("stream", "downstream")
        if not isinstance(stream, str) or stream.lower() not in STREAMS:
            raise ApiError(INVALID_STREAM, 400)
        stream = stream.lower()
        kind = body.get("type", "")
        if not isinstance(kind, str) or kind not in TOXIC_TYPES:
            raise ApiError(INVALID_TOXIC_TYPE, 400)
        name = body.get("name") or f"{kind}_{stream}"
        if not isinstance(name, str):
            raise bad_request("name must be a string")
        toxic = cls(name, kind, stream, 1.0, dict.fromkeys(TOXIC_TYPES[kind], 0))
        return toxic.updated(body)

    def updated(self, body: object) -> Toxic:
        """Applies an update request: ``toxicity`` and (a subset of) ``attributes``; other fields are ignored."""
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object")
        toxicity = body.get("toxicity", self.toxicity)
        if isinstance(toxicity, bool) or not isinstance(toxicity, int | float) or not 0 <= toxicity <= 1:
            raise bad_request("toxicity must be a number from 0 to 1")
        attrs = body.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise bad_request("attributes must be an object")
        merged = dict(self.attributes)
        for key, value in attrs.items():
            if key not in merged:
                raise bad_request(f"unknown attribute {key!r} for toxic type {self.type!r}")
            merged[key] = _non_negative_int(key, value)
        return replace(self, toxicity=float(toxicity), attributes=merged)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


def _non_negative_int(key: str, value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_request(f"attribute {key!r} must be a non-negative integer")
    return value
