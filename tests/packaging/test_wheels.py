"""What the distributions ship: the server wheel holds the node, its HTTP layer and its state machine, and none of
the repository's tools (``bench``, ``chaos``) or the client (which is its own distribution)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _build_wheel(source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def _top_level_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return {name.split("/", 1)[0] for name in zf.namelist() if not name.split("/", 1)[0].endswith(".dist-info")}


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(zf.read(meta).decode())
    return [r for r in message.get_all("Requires-Dist") or [] if "extra ==" not in r]


def test_the_server_wheel_ships_the_node_and_no_repository_tools(tmp_path: Path) -> None:
    wheel = _build_wheel(ROOT, tmp_path)
    assert _top_level_names(wheel) == {"raft_queue", "api", "state_machine"}
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith("raft_queue/client") or "/tests/" in n]
    assert "raft_queue/node/raft/journal.py" in names
    assert any(r.startswith("raft-queue-client") for r in _requirements(wheel))


def test_the_client_wheel_adds_one_top_level_name_and_needs_only_aiohttp_and_msgspec(tmp_path: Path) -> None:
    wheel = _build_wheel(ROOT / "client", tmp_path)
    assert _top_level_names(wheel) == {"raft_queue_client"}
    assert sorted(r.split(">")[0].split("<")[0].split("=")[0].strip() for r in _requirements(wheel)) == [
        "aiohttp",
        "msgspec",
    ]
