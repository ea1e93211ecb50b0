"""The documents say what the code is: docs/http-api.md's table of errors against ``ProblemCode`` and the status
each code is answered with, api/DESIGN.md's module table against the files of api/."""

from __future__ import annotations

import re
from pathlib import Path

import api.problems
from api.problems import READ_FAILURES, REJECTED, WRITE_FAILURES, ProblemCode

ROOT = Path(__file__).resolve().parents[3]
API_DIR = Path(api.problems.__file__).resolve().parent


def _section(text: str, heading: str) -> str:
    """The lines under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start:], flags=re.MULTILINE)
    return text[start:] if following is None else text[start : start + following.start()]


def _rows(section: str) -> list[list[str]]:
    """The cells of each table row below the header (``|---|`` and the line before it are left out)."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _error_table() -> dict[str, int]:
    """docs/http-api.md, "Errors": problem code -> status."""
    table: dict[str, int] = {}
    for status, codes, *_ in _rows(_section((ROOT / "docs" / "http-api.md").read_text(), "## Errors")):
        for code in re.findall(r"`([a-z_]+)`", codes):
            table[code] = int(status)
    return table


def test_the_error_table_names_every_problem_code_and_no_other() -> None:
    assert set(_error_table()) == {str(code) for code in ProblemCode}


def test_the_error_table_gives_the_status_each_code_is_answered_with() -> None:
    table = _error_table()
    for status, code, _ in REJECTED.values():
        assert table[code] == status, code
    for failures in (WRITE_FAILURES, READ_FAILURES):
        for code, _ in failures.values():
            assert table[code] == 503, code


def test_the_module_table_of_the_design_lists_exactly_the_modules_of_api() -> None:
    section = _section((API_DIR / "DESIGN.md").read_text(), "## Modules, one concept each")
    listed = [re.fullmatch(r"`([\w.]+)`", row[0]) for row in _rows(section)]
    assert all(listed), "every row names one module"
    names = [match.group(1) for match in listed if match]
    assert len(names) == len(set(names))
    assert set(names) == {path.name for path in API_DIR.glob("*.py")}
