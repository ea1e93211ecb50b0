"""Import allow-lists: what each shipped package may import, checked on the source of every module (its AST).

import-linter (``make lint``, pyproject.toml) holds what it can express: who alone may import pysyncobj, rocksdict,
``api``, ``raft_queue`` and ``chaos`` ("protected" contracts). What a package may import *at all*, third-party
names included, is an allow-list here: a module added anywhere is covered without editing a list, and a new
dependency fails until it is allowed on purpose. The standard library is always allowed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}

#: The client's allow-list, wherever the client lives (``raft_queue.client`` today, ``raft_queue_client`` in its own
#: distribution). multidict and yarl are aiohttp's own types (required dependencies of aiohttp, installed with it).
CLIENT_ALLOWED = frozenset({"aiohttp", "msgspec", "multidict", "yarl"})


@dataclass(frozen=True)
class Rule:
    #: The dotted package (or module) the rule governs; the most specific rule that matches a module wins.
    package: str
    #: Dotted names a module of it may import (an import of ``a.b.c`` is allowed by ``a``, ``a.b`` or ``a.b.c``).
    allowed: frozenset[str]


RULES = [
    # The core: no other first-party package, no web framework, no Raft.
    Rule("state_machine", frozenset({"state_machine", "msgspec", "rocksdict"})),
    # The HTTP layer: the core's vocabulary and aiohttp; never the node, Raft or RocksDB.
    Rule("api", frozenset({"api", "state_machine", "aiohttp", "msgspec"})),
    # The server distribution's own package; none of it imports api or pysyncobj unless a rule below says so.
    Rule("raft_queue", frozenset({"raft_queue", "raft_queue_client", "aiohttp", "uvloop", "msgspec"})),
    Rule("raft_queue.node", frozenset({"raft_queue.node", "raft_queue.config", "state_machine"})),
    # The process: it builds the HTTP app over the node.
    Rule("raft_queue.node.server", frozenset({"raft_queue.node", "raft_queue.config", "api", "aiohttp", "uvloop"})),
    # The Raft adapter: the only importer of pysyncobj.
    Rule(
        "raft_queue.node.raft", frozenset({"raft_queue.node.raft", "raft_queue.config", "state_machine", "pysyncobj"})
    ),
    # The client stands alone: applications install it without the server.
    Rule("raft_queue.client", CLIENT_ALLOWED | {"raft_queue.client"}),
    Rule("raft_queue_client", CLIENT_ALLOWED | {"raft_queue_client"}),
]

#: Where each top-level package's source is (the client's own distribution keeps it under client/).
SOURCES = {
    "state_machine": ROOT / "state_machine",
    "api": ROOT / "api",
    "raft_queue": ROOT / "raft_queue",
    "raft_queue_client": ROOT / "client" / "raft_queue_client",
}


def _covers(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_for(module: str) -> Rule:
    return max((r for r in RULES if _covers(r.package, module)), key=lambda r: len(r.package))


def modules() -> Iterator[tuple[str, Path]]:
    for top, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def imported_names(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the module, at any depth (function-level ones too)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, node.module or ""
                continue
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])


def disallowed(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, name) of every import the module's rule does not allow."""
    rule = rule_for(module)
    return [
        (line, name)
        for line, name in imported_names(module, path)
        if name.split(".")[0] not in STDLIB and not any(_covers(a, name) for a in rule.allowed)
    ]


ALL_MODULES = list(modules())


def test_every_shipped_package_is_found() -> None:
    found = {name for name, _ in ALL_MODULES}
    for expected in ("state_machine.machine", "api.app", "raft_queue.node.node", "raft_queue.node.raft.replica"):
        assert expected in found
    assert "raft_queue.client" in found or "raft_queue_client" in found, "the client's source was not found"


@pytest.mark.parametrize(("module", "path"), ALL_MODULES, ids=[name for name, _ in ALL_MODULES])
def test_imports_only_what_its_package_allows(module: str, path: Path) -> None:
    allowed = ", ".join(sorted(rule_for(module).allowed))
    found = [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in disallowed(module, path)]
    assert found == [], f"{module} may import only the stdlib and {allowed}"


@pytest.mark.parametrize(
    ("module", "source", "allowed"),
    [
        ("raft_queue.node.group_commit", "from pysyncobj import FAIL_REASON", False),
        ("raft_queue.node.node", "import api", False),
        ("raft_queue.node.server", "from api import create_app", True),
        ("raft_queue.node.raft.replica", "from pysyncobj import SyncObj", True),
        ("raft_queue.node.raft.new_module", "import aiohttp", False),
        ("raft_queue.cli", "from raft_queue.node.server import run", True),
        ("raft_queue.cli", "import pysyncobj", False),
        ("state_machine.new_module", "from raft_queue.config import NodeConfig", False),
        ("state_machine.new_module", "import aiohttp", False),
        ("state_machine.new_module", "from . import keys", True),
        ("api.new_module", "import rocksdict", False),
        ("api.new_module", "from state_machine.contract import Applied", True),
        ("raft_queue.client.new_module", "from raft_queue.config import NodeConfig", False),
        ("raft_queue.client.new_module", "from .models import Message", True),
        ("raft_queue_client.new_module", "import state_machine", False),
        ("raft_queue_client.new_module", "import requests", False),
    ],
)
def test_the_allow_lists_catch_a_new_module(tmp_path: Path, module: str, source: str, allowed: bool) -> None:
    path = tmp_path / "new_module.py"
    path.write_text(source + "\n")
    assert (disallowed(module, path) == []) is allowed
