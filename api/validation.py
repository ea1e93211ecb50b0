"""Request parsing primitives: a JSON body -> plain Python values, checked one field at a time.

Every failure is a 400 ``invalid_request`` whose ``field`` names the value as the client spelled it
(``messages[3].attributes``). Booleans are never numbers, floats are never integers, NaN and infinities are
refused, integers stay within int64 (the log's codec), and unknown fields are errors.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Collection, Mapping

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError

from api.problems import Problem, invalid_request

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Durations beyond this many seconds are refused before they are converted (no float overflow on * 1000).
MAX_ANY_SECONDS = 10**12

_decoder = msgspec.json.Decoder()


def json_type(value: object) -> str:
    """How a decoded JSON value is named in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, object]:
    """The request body as a JSON object. ``optional``: an empty body reads as ``{}``.

    A body over the node's limit raises aiohttp's 413, which the problem middleware renders."""
    try:
        raw = await request.read()
    except (RequestPayloadError, PayloadEncodingError) as exc:  # e.g. Content-Encoding: gzip on a body that is not
        raise invalid_request(None, f"the request body could not be read: {exc}") from None
    if not raw.strip():
        if optional:
            return {}
        raise invalid_request(None, "the request body must be a JSON object")
    try:
        value = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise invalid_request(None, f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec's decoder recurses once per nesting level
        raise invalid_request(None, "malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise invalid_request(None, f"the request body must be a JSON object, got {json_type(value)}")
    return value


def check_fields(obj: Mapping[str, object], allowed: Collection[str], prefix: str = "") -> None:
    for name in obj:
        if name not in allowed:
            expected = ", ".join(sorted(allowed))
            raise invalid_request(join(prefix, name), f"unknown field (expected one of: {expected})")


def require(obj: Mapping[str, object], name: str, prefix: str = "") -> object:
    if name not in obj:
        raise invalid_request(join(prefix, name), "is required")
    return obj[name]


def _wrong_type(field: str, expected: str, value: object) -> Problem:
    return invalid_request(field, f"expected {expected}, got {json_type(value)}")


def as_object(value: object, field: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _wrong_type(field, "an object", value)
    return value


def as_list(value: object, field: str, *, min_len: int, max_len: int) -> list[object]:
    if not isinstance(value, list):
        raise _wrong_type(field, "an array", value)
    if not min_len <= len(value) <= max_len:
        raise invalid_request(field, f"must hold {min_len} to {max_len} items, got {len(value)}")
    return value


def as_str(value: object, field: str, *, min_len: int = 0, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise _wrong_type(field, "a string", value)
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        bounds = f"at least {min_len}" if max_len is None else f"{min_len} to {max_len}"
        raise invalid_request(field, f"must be {bounds} characters long, got {len(value)}")
    return value


def as_base64(value: object, field: str) -> bytes:
    """Standard base64 with padding (RFC 4648 section 4) -> the bytes it encodes. Strict: ASCII only, no whitespace
    or line breaks, no URL-safe alphabet, padding only at the end and exactly as long as needed, and pad bits zero
    (so each byte string has one spelling)."""
    text = as_str(value, field)
    if not text.isascii():
        raise invalid_request(field, "is not base64: it holds a character outside ASCII")
    encoded = text.encode("ascii")
    try:
        data = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error as exc:
        raise invalid_request(field, f"is not base64 (RFC 4648 standard alphabet, with padding): {exc}") from None
    if binascii.b2a_base64(data, newline=False) != encoded:
        # a2b_base64 in strict mode still takes padding after a full quantum ("YWJj=") and non-zero pad bits ("YR==")
        raise invalid_request(field, "is not canonical base64 (padding only where needed, pad bits zero)")
    return data


def as_int(value: object, field: str, *, lo: int = INT64_MIN, hi: int = INT64_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(field, "an integer", value)
    if not lo <= value <= hi:
        if (lo, hi) == (INT64_MIN, INT64_MAX):
            raise invalid_request(field, "is out of range")
        raise invalid_request(field, f"must be {lo} to {hi}, got {value}")
    return value


def as_number(value: object, field: str) -> float:
    """Any finite JSON number (integer or fraction), never a boolean."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(field, "a number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid_request(field, "must be a finite number")
    return value


def seconds_to_ms(value: object, field: str) -> int:
    """A duration in seconds -> whole milliseconds (``round(s * 1000)``), ranges left to the caller."""
    seconds = as_number(value, field)
    if abs(seconds) > MAX_ANY_SECONDS:
        raise invalid_request(field, "is out of range")
    return round(seconds * 1000)


def duration_ms(value: object, field: str, *, max_ms: int, positive: bool) -> int:
    """A duration in seconds, 0 (or > 0 when ``positive``) to ``max_ms / 1000``, as milliseconds."""
    ms = seconds_to_ms(value, field)
    lo = 1 if positive else 0
    if not lo <= ms <= max_ms:
        bound = "> 0 and at most" if positive else "0 to"
        raise invalid_request(field, f"must be {bound} {max_ms / 1000:g} seconds")
    return ms


def as_flag(value: str, field: str) -> bool:
    """A boolean query parameter: true/1/yes or false/0/no (any case)."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no", ""):
        return False
    raise invalid_request(field, f"must be true or false, got {value!r}")
