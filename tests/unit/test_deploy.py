"""The files under deploy/ agree with the CLI: they parse, use only known flags and variables, and configure
valid nodes. No container engine or cluster is needed."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from raft_queue import cli
from raft_queue.config import NodeConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"
ENV_NAME_RE = re.compile(r"\bRAFT_QUEUE_[A-Z0-9_]+")
FLAG_RE = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def known_env_vars() -> set[str]:
    return {env for _, env in cli.node_env_vars()}


def node_flags() -> set[str]:
    return {flag for flag, _ in cli.node_env_vars()} | {"--help", "-h"}


def node_config(env: dict[str, str], secret_dir: Path) -> NodeConfig:
    """Resolve a deployment's environment as `raft-queue node` would, with the secret file made local."""
    secret_file = secret_dir / "cluster-secret"
    secret_file.write_text("a-test-secret-of-enough-length\n")
    env = {**env, "RAFT_QUEUE_CLUSTER_SECRET_FILE": str(secret_file)}
    return cli.resolve_node_config(cli.build_parser().parse_args(["node"]), env)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(i.upper(), rest.strip()) for i, _, rest in (ln.strip().partition(" ") for ln in joined.splitlines()) if i]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(args))  # type: ignore[misc]
    return env


def k8s_docs() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in K8S.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            key = doc["kind"] if doc["kind"] != "Service" else f"Service/{doc['metadata']['name']}"
            docs[key] = doc
    return docs


def env_file(path: Path) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def systemd_unit() -> dict[str, list[str]]:
    unit: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / "raft-queue@.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            unit.setdefault(key.strip(), []).append(value.strip())
    return unit


# --- everything parses and names only what the CLI knows


def test_expected_files_exist() -> None:
    for name in [
        "Dockerfile",
        "compose.yaml",
        "README.md",
        "systemd/raft-queue@.service",
        "systemd/n1.env.example",
    ]:
        assert (DEPLOY / name).is_file(), name
    assert {"statefulset.yaml", "service-headless.yaml", "service.yaml", "pdb.yaml"} <= {p.name for p in YAML_FILES}


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(doc, dict) for doc in docs)


def test_every_env_var_used_exists_in_the_cli() -> None:
    used = {name for path in DEPLOY.rglob("*") if path.is_file() for name in ENV_NAME_RE.findall(path.read_text())}
    assert used, "no RAFT_QUEUE_* variable found under deploy/"
    assert used <= known_env_vars(), sorted(used - known_env_vars())


def test_dockerfile_command_line_is_a_valid_node_command() -> None:
    instructions = dict(dockerfile_instructions())
    assert instructions["FROM"] == "python:3.11-slim"
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    assert entrypoint[:2] == ["raft-queue", "node"]
    argv = entrypoint[1:] + (json.loads(instructions["CMD"]) if "CMD" in instructions else [])
    assert set(FLAG_RE.findall(" ".join(argv))) <= node_flags()
    cli.build_parser().parse_args(argv)
    assert instructions["USER"].split(":")[0] not in ("0", "root")
    assert "/data" in instructions["VOLUME"]
    assert set(instructions["EXPOSE"].split()) == {"7000", "8000"}
    assert "/healthz" in instructions["HEALTHCHECK"]


def test_dockerfile_defaults_match_the_image() -> None:
    env = dockerfile_env()
    assert env["RAFT_QUEUE_DATA_DIR"] == "/data"
    assert env["RAFT_QUEUE_RAFT_BIND"].endswith(":7000") and env["RAFT_QUEUE_HTTP_BIND"].endswith(":8000")


def test_systemd_unit() -> None:
    unit = systemd_unit()
    assert unit["EnvironmentFile"] == ["/etc/raft-queue/%i.env"]
    assert unit["Restart"] == ["on-failure"]
    assert int(unit["LimitNOFILE"][0]) >= 65536
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "CapabilityBoundingSet",
    ]:
        assert hardening in unit
    (exec_start,) = unit["ExecStart"]
    program, *argv = shlex.split(exec_start)
    assert Path(program).name == "raft-queue" and argv[0] == "node"
    assert set(FLAG_RE.findall(exec_start)) <= node_flags()
    cli.build_parser().parse_args(argv)
    assert unit["StateDirectory"] == ["raft-queue/%i"]


# --- each deployment configures valid nodes


def test_systemd_example_env_is_a_valid_node(tmp_path: Path) -> None:
    env = env_file(DEPLOY / "systemd" / "n1.env.example")
    c = node_config(env, tmp_path)
    assert c.node_id == "n1" and len(c.peers) == 3
    assert c.data_dir == Path("/var/lib/raft-queue") / "n1"  # the unit's StateDirectory=raft-queue/%i


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def test_compose_nodes_are_valid_and_consistent(tmp_path: Path) -> None:
    doc = compose()
    services = doc["services"]
    assert sorted(services) == ["n1", "n2", "n3"]
    configs = []
    for name, service in services.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        (secret,) = service["secrets"]
        assert secret in doc["secrets"]
        assert env["RAFT_QUEUE_CLUSTER_SECRET_FILE"] == f"/run/secrets/{secret}"
        c = node_config({**dockerfile_env(), **env}, tmp_path)
        assert c.node_id == name == service["hostname"]
        assert c.self_peer.raft_address == f"{name}:7000" and c.self_peer.http_url == f"http://{name}:8000"
        assert (c.raft_bind, c.http_bind_host, c.http_bind_port) == ("0.0.0.0:7000", "0.0.0.0", 8000)
        (volume,) = service["volumes"]
        assert volume.split(":")[1] == str(c.data_dir) and volume.split(":")[0] in doc["volumes"]
        assert all(p.endswith(f":{c.http_bind_port}") for p in service["ports"])
        configs.append(c)
    assert len({c.peers for c in configs}) == 1
    assert len({v.split(":")[0] for s in services.values() for v in s["volumes"]}) == 3
    secret_file = doc["secrets"]["cluster_secret"]["file"]
    assert Path(secret_file).name in (DEPLOY / ".gitignore").read_text()


def test_kubernetes_statefulset_matches_services_and_pdb() -> None:
    docs = k8s_docs()
    sts, headless, client, pdb = (
        docs["StatefulSet"], docs["Service/raft-queue-headless"], docs["Service/raft-queue"],
        docs["PodDisruptionBudget"],
    )  # fmt: skip
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    for selector in (
        headless["spec"]["selector"],
        client["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert spec["podManagementPolicy"] == "Parallel"
    (container,) = spec["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {
        container["readinessProbe"]["httpGet"]["port"],
        container["livenessProbe"]["httpGet"]["port"],
    } <= port_names
    claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert claims == ["data"] and mounts["data"] == "/data"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.stem != "kustomization")


def pod_env(sts: dict[str, Any], ordinal: int) -> dict[str, str]:
    """The container's env as pod `<name>-<ordinal>` sees it (fieldRef metadata.name is the pod name)."""
    pod_name = f"{sts['metadata']['name']}-{ordinal}"
    env = {}
    for var in sts["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, var
            env[var["name"]] = pod_name
    return env


def test_kubernetes_pods_are_valid_nodes(tmp_path: Path) -> None:
    docs = k8s_docs()
    sts = docs["StatefulSet"]
    headless = sts["spec"]["serviceName"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for ordinal in range(sts["spec"]["replicas"]):
        env = pod_env(sts, ordinal)
        c = node_config({**dockerfile_env(), **env}, tmp_path)
        name = f"raft-queue-{ordinal}"
        assert c.node_id == name
        assert len(c.peers) == sts["spec"]["replicas"]
        assert c.self_peer.raft_address == f"{name}.{headless}:{ports['raft']}"
        assert c.self_peer.http_url == f"http://{name}.{headless}:{ports['http']}"
        assert (c.raft_bind, c.http_bind_port) == (f"0.0.0.0:{ports['raft']}", ports["http"])
    env = pod_env(sts, 0)
    secret_dir = str(Path(env["RAFT_QUEUE_CLUSTER_SECRET_FILE"]).parent)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == secret_dir)
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "raft-queue-secret"
    assert [i["path"] for i in volume["secret"]["items"]] == [Path(env["RAFT_QUEUE_CLUSTER_SECRET_FILE"]).name]


def test_the_image_installs_the_client_and_the_server_and_copies_no_repository_tools() -> None:
    copied = {args.split()[0] for instruction, args in dockerfile_instructions() if instruction == "COPY"}
    assert {"client", "raft_queue", "api", "state_machine"} <= copied
    assert not copied & {"chaos", "bench", "tests"}
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    installs = [args for args in runs if "pip install" in args]
    # One pip command, so that the local client satisfies the server's raft-queue-client requirement.
    assert len(installs) == 1 and "./client ." in installs[0]
