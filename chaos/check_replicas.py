"""Replicas identical: after healing, every node reaches the same state at the same applied index.

Input: one sample or a list of samples, each ``{node_id: {"applied_index": int, "digest": str}}`` (taken after the
faults stopped, e.g. polled until the indices meet).

- **divergence** (in any sample): two nodes at the same ``applied_index`` with different digests. The state
  machine is deterministic, so the same log prefix must give the same state: this is invalid whatever the other
  samples say.
- **agreement**: a sample in which every expected node (all nodes of the sample unless ``expected_nodes`` is
  given) is present, at one applied index, with one digest.

``valid`` iff some sample agrees and no sample diverges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

Sample = Mapping[str, Mapping[str, object]]


@dataclass(frozen=True)
class Divergence:
    sample: int
    applied_index: int
    #: node -> digest
    digests: dict[str, str]


@dataclass(frozen=True)
class ReplicasResult:
    valid: bool
    samples: int
    #: the first sample in which all nodes agree (None if none)
    agreeing_sample: int | None
    agreed_index: int | None
    agreed_digest: str | None
    divergences: list[Divergence] = field(default_factory=list)
    #: why the last sample did not agree
    last_disagreement: str | None = None


def _parse(sample: Sample, n: int) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for node, raw in sample.items():
        index, digest = raw.get("applied_index"), raw.get("digest")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(digest, str):
            raise ValueError(f"sample {n}, node {node}: need an int applied_index and a str digest, got {dict(raw)!r}")
        out[node] = (index, digest)
    return out


def check_replicas(
    samples: Sample | Sequence[Sample], *, expected_nodes: Collection[str] | None = None
) -> ReplicasResult:
    series: list[Sample] = [samples] if isinstance(samples, Mapping) else list(samples)
    agreeing: int | None = None
    agreed: tuple[int, str] | None = None
    divergences: list[Divergence] = []
    why: str | None = "no samples" if not series else None
    for n, raw in enumerate(series):
        sample = _parse(raw, n)
        by_index: dict[int, dict[str, str]] = defaultdict(dict)
        for node, (index, digest) in sample.items():
            by_index[index][node] = digest
        for index, digests in sorted(by_index.items()):
            if len(set(digests.values())) > 1:
                divergences.append(Divergence(n, index, dict(sorted(digests.items()))))
        wanted = set(sample) if expected_nodes is None else set(expected_nodes)
        missing = wanted - set(sample)
        values = {sample[node] for node in wanted if node in sample}
        if missing:
            why = f"sample {n}: no report from {sorted(missing)}"
        elif not wanted:
            why = f"sample {n}: no nodes"
        elif len(values) > 1:
            why = f"sample {n}: " + ", ".join(f"{node}@{i}:{d[:12]}" for node, (i, d) in sorted(sample.items()))
        elif agreeing is None:
            agreeing, agreed = n, next(iter(values))
    return ReplicasResult(
        valid=agreeing is not None and not divergences,
        samples=len(series),
        agreeing_sample=agreeing,
        agreed_index=agreed[0] if agreed else None,
        agreed_digest=agreed[1] if agreed else None,
        divergences=divergences,
        last_disagreement=why if agreeing is None else None,
    )
