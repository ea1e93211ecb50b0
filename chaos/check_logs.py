"""Node logs: no Python tracebacks, no CRITICAL lines.

Scans each file line by line for any of ``patterns`` (default ``Traceback`` and ``CRITICAL``, case-sensitive
substrings). Each hit is reported with its file, line number, the line and up to ``context_lines`` lines after it
(the traceback's frames and the exception); at most ``max_hits_per_file`` hits per file are kept, all are counted.
A file that does not exist is reported as missing and makes the result invalid unless ``allow_missing``: a check
that read nothing must not pass.

``expected`` lists whole lines the run caused on purpose (a node refusing to start on a file the nemesis damaged
logs its refusal at CRITICAL): a line equal to one of them is counted in ``expected_hits`` instead. Each expected
line excuses any number of identical lines, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATTERNS = ("Traceback", "CRITICAL")


@dataclass(frozen=True)
class LogHit:
    path: str
    line_number: int
    line: str
    following: list[str]


@dataclass(frozen=True)
class LogsResult:
    valid: bool
    files_scanned: int
    #: path -> number of matching lines
    hit_counts: dict[str, int]
    hits: list[LogHit] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    expected_hits: int = 0


def check_logs(
    paths: Iterable[Path | str],
    *,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    context_lines: int = 5,
    max_hits_per_file: int = 5,
    allow_missing: bool = False,
    expected: Iterable[str] = (),
) -> LogsResult:
    excused = {line.strip() for line in expected}
    expected_hits = 0
    hits: list[LogHit] = []
    counts: dict[str, int] = {}
    missing: list[str] = []
    scanned = 0
    for p in paths:
        path = Path(p)
        if not path.is_file():
            missing.append(str(path))
            continue
        scanned += 1
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        count = 0
        for n, line in enumerate(lines):
            if any(pattern in line for pattern in patterns):
                if line.strip() in excused:
                    expected_hits += 1
                    continue
                count += 1
                if count <= max_hits_per_file:
                    hits.append(LogHit(str(path), n + 1, line, lines[n + 1 : n + 1 + context_lines]))
        if count:
            counts[str(path)] = count
    return LogsResult(
        valid=not counts and (allow_missing or not missing),
        files_scanned=scanned,
        hit_counts=counts,
        hits=hits,
        missing=missing,
        expected_hits=expected_hits,
    )
