"""Each package's DESIGN.md names every module in its folder, and names no module that is not there (a module a
DESIGN.md mentions may also be the package's test, under tests/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: package folder -> where its tests live
PACKAGES = {
    "api": "tests/unit/api",
    "state_machine": "tests/unit/state_machine",
    "raft_queue": "tests/unit/node",
    "chaos": "tests/unit/chaos",
    "bench": "tests/bench",
    "client/raft_queue_client": "tests/unit/client",
}
_MODULE = re.compile(r"(?<![/\w])([a-z_0-9]+\.py)\b")


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_the_module_map_matches_the_folder(package: str) -> None:
    folder = ROOT / package
    text = (folder / "DESIGN.md").read_text()
    modules = {p.name for p in folder.rglob("*.py")}
    assert [m for m in sorted(modules) if m not in text] == [], f"{package}/DESIGN.md does not name these"
    tests = {p.name for p in (ROOT / PACKAGES[package]).rglob("*.py")}
    assert sorted(set(_MODULE.findall(text)) - modules - tests) == [], f"{package}/DESIGN.md names modules not there"
