"""The funnel of a run, built from the shard manifests, and the invariant that nothing was lost.

Every record (an input sample, or one an op created) has exactly one entry per stage it reached, and
exactly one terminal fate: kept, dropped (op + reason), review, quarantined (op + error) or split (into
listed children). `check_ledger` proves it from the manifests and the shards on disk: keys are unique per
shard and stage, what stage k passed on is exactly what stage k+1 read, and every shard holds exactly
the keys its manifest says it kept.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.curation.api import CurationError
from runtime.curation.layout import Layout
from runtime.curation.shards import Unreadable, member_keys, read_shard
from runtime.curation.stages import StagePlan, op_from_json

TERMINAL = ("kept", "dropped", "review", "quarantined", "split")
REJECT_SAMPLES = 5  # keys listed per (op, reason)


@dataclass
class OpFunnel:
    """One op's share of the funnel."""

    name: str
    kind: str
    seen: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    review: int = 0
    quarantined: int = 0
    split: int = 0  # records replaced by children
    created: int = 0  # children and generated records
    seconds: float = 0.0  # summed over records (and the barrier's decision); workers run in parallel
    samples_out: int = 0  # records the op passed on: kept plus created
    samples_per_second: float = 0.0  # seen / seconds: the op's throughput on one worker


@dataclass
class Report:
    """What `genspec curate` prints and writes to OUTPUT/report.json."""

    pipeline: str
    input: list[str]
    output: str
    executor: str
    workers: int
    scale: str
    shards: int
    samples_read: int
    created: int
    kept: int
    dropped: int
    review: int
    quarantined: int
    split: int
    read_quarantined: int
    ops: list[OpFunnel]
    rejects: dict[str, list[dict[str, str]]]
    histograms: dict[str, str]
    seconds: float
    notes: list[str] = field(default_factory=list)  # stand-ins and other ways the run differs from full scale
    rejects_index: str = ""  # OUT/report/rejects/index.json: the sampled rejects as files (write_rejects)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    def summary(self) -> str:
        """One line for a terminal."""
        return (
            f"{self.pipeline}: read {self.samples_read} samples from {self.shards} shards, kept {self.kept}, "
            f"dropped {self.dropped}, review {self.review}, quarantined {self.quarantined} ({self.seconds:.1f} s)"
        )


def load_manifests(layout: Layout, stages: list[StagePlan], stems: list[str]) -> list[list[dict[str, Any]]]:
    """Manifests per stage, per shard (in `stems` order); CurationError if one is missing."""
    result = []
    for stage in stages:
        manifests = []
        for stem in stems:
            path = layout.manifest(stage.index, stem)
            if not path.is_file():
                raise CurationError(f"stage {stage.index} of shard {stem} has not finished: {path} is missing")
            manifests.append(json.loads(path.read_text()))
        result.append(manifests)
    return result


def check_ledger(layout: Layout, stages: list[StagePlan], manifests: list[list[dict[str, Any]]]) -> None:
    """Raise CurationError unless every record ends in exactly one place (see the module docstring)."""
    problems = []
    for stage, shard_manifests in zip(stages, manifests):
        for manifest in shard_manifests:
            stem, entries = manifest["shard"], manifest["records"]
            counts = Counter(e["key"] for e in entries)
            twice = [k for k, n in counts.items() if n > 1]
            if twice:
                problems.append(f"stage {stage.index}, shard {stem}: keys recorded twice: {twice[:5]}")
            passed = [e["key"] for e in entries if e["fate"] in ("kept", "pass")]
            shard = layout.kept(stem) if stage.final else layout.intermediate(stage.index, stem)
            on_disk = member_keys(shard) if shard.is_file() else []
            if on_disk != passed:
                problems.append(
                    f"stage {stage.index}, shard {stem}: {shard} holds {len(on_disk)} samples, the manifest "
                    f"kept {len(passed)}" + _difference(passed, on_disk)
                )
            if stage.index > 0:
                before = next(m for m in manifests[stage.index - 1] if m["shard"] == stem)
                sent = {e["key"] for e in before["records"] if e["fate"] == "pass"}
                read = {e["key"] for e in entries if not e.get("origin") and not e["key"].startswith("_")}
                if sent != read:
                    problems.append(f"shard {stem}: stage {stage.index - 1} passed on {len(sent)} records, stage "
                                    f"{stage.index} read {len(read)}" + _difference(sorted(sent), sorted(read)))
    if problems:
        raise CurationError("curation ledger is inconsistent (samples lost or duplicated):\n  " + "\n  ".join(problems))


def _difference(expected: list[str], actual: list[str]) -> str:
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    return f"; missing {missing[:5]}, unexpected {extra[:5]}" if missing or extra else "; order differs"


def build_report(
    stages: list[StagePlan], manifests: list[list[dict[str, Any]]], figures: Path, **run: Any
) -> Report:
    """Totals, per-op funnel, sampled rejects and histograms from the manifests."""
    ops = _pipeline_ops(stages)
    funnel = {name: OpFunnel(name, kind) for name, kind in ops}
    totals: Counter[str] = Counter()
    values: dict[str, list[float]] = defaultdict(list)
    rejects: dict[str, list[dict[str, str]]] = defaultdict(list)
    samples_read = created = read_quarantined = 0
    for stage, shard_manifests in zip(stages, manifests):
        for manifest in shard_manifests:
            for entry in manifest["records"]:
                if entry.get("origin"):
                    created += 1
                    funnel[entry["origin"]].created += 1
                elif stage.index == 0:
                    samples_read += 1
                for name, seconds in entry["trace"].items():
                    funnel[name].seen += 1
                    funnel[name].seconds += seconds
                fate = entry["fate"]
                if fate not in TERMINAL:
                    continue
                totals[fate] += 1
                for name, value in entry.get("values", {}).items():
                    values[name].append(value)
                op = entry.get("op")
                if op == "read":
                    read_quarantined += 1
                elif op:
                    _count(funnel[op], fate, entry.get("reason", ""))
                if fate in ("dropped", "review", "quarantined") and op:
                    label = f"{op}: {entry.get('reason', '')}"
                    if len(rejects[label]) < REJECT_SAMPLES:
                        rejects[label].append({"key": entry["key"], "shard": manifest["shard"], "stage": stage.index,
                                               "detail": entry.get("detail", ""), "origin": entry.get("origin", "")})
    for item in funnel.values():
        item.kept = item.seen - sum(item.dropped.values()) - item.review - item.quarantined - item.split
        item.seconds = round(item.seconds, 4)
        item.samples_out = item.kept + item.created
    return Report(
        **run,
        samples_read=samples_read,
        created=created,
        kept=totals["kept"],
        dropped=totals["dropped"],
        review=totals["review"],
        quarantined=totals["quarantined"],
        split=totals["split"],
        read_quarantined=read_quarantined,
        ops=list(funnel.values()),
        rejects=dict(rejects),
        histograms=plot_histograms(values, figures),
    )


def throughput(ops: list[OpFunnel]) -> None:
    """Set samples_per_second from seen and seconds (after barrier seconds are added)."""
    for item in ops:
        item.samples_per_second = round(item.seen / item.seconds, 2) if item.seconds > 0 else 0.0


def write_rejects(layout: Layout, manifests: list[list[dict[str, Any]]], rejects: dict[str, list[dict[str, Any]]]) -> Path:
    """The sampled rejects (REJECT_SAMPLES per op and reason) as files for a person to look at:
    OUT/report/rejects/<op>__<reason>/<key>.<member> (media, caption, metadata as read by the op's stage)
    and OUT/report/rejects/index.json listing each with its reason, detail and files. Each source shard is
    read once, for the keys wanted from it; records an op created (clip children) are listed, not written."""
    directory = layout.rejects()
    if directory.is_dir():
        shutil.rmtree(directory)  # a rerun's sample replaces the last one's
    directory.mkdir(parents=True)
    sources = {(m["stage"], m["shard"]): m["source"] for stage in manifests for m in stage}
    wanted: dict[str, dict[str, tuple[str, dict[str, Any]]]] = defaultdict(dict)  # source -> key -> (label, entry)
    index: list[dict[str, Any]] = []
    for label, entries in sorted(rejects.items()):
        for entry in entries:
            row = {"label": label, **entry, "files": []}
            index.append(row)
            if entry.get("origin"):
                row["files_note"] = f"created by {entry['origin']}: not in the stage's source shard"
            else:
                wanted[sources[entry["stage"], entry["shard"]]][entry["key"]] = (label, row)
    for source, keys in wanted.items():
        for item in read_shard(source):
            if item.key not in keys:
                continue
            label, row = keys[item.key]
            folder = directory / re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace(": ", "__"))
            folder.mkdir(exist_ok=True)
            members = item.members if isinstance(item, Unreadable) else item.to_members()
            for name, data in sorted(members.items()):
                path = folder / f"{item.key}.{name}"
                path.write_bytes(data)
                row["files"].append(str(path.relative_to(directory)))
    path = directory / "index.json"
    path.write_text(json.dumps(index, indent=2) + "\n")
    return path


def _pipeline_ops(stages: list[StagePlan]) -> list[tuple[str, str]]:
    """(name, kind) of every op in pipeline order."""
    ops = []
    for stage in stages:
        for op in [*stage.ops, *([stage.barrier_out] if stage.barrier_out else [])]:
            spec = op_from_json(op)
            ops.append((spec.name, spec.kind))
    return ops


def _count(item: OpFunnel, fate: str, reason: str) -> None:
    if fate == "dropped":
        item.dropped[reason] = item.dropped.get(reason, 0) + 1
    elif fate == "review":
        item.review += 1
    elif fate == "quarantined":
        item.quarantined += 1
    elif fate == "split":
        item.split += 1


def plot_histograms(values: dict[str, list[float]], directory: Path) -> dict[str, str]:
    """One PNG per op with numeric scores: op name -> file path."""
    if not values:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in sorted(values.items()):
        figure, axes = plt.subplots(figsize=(5, 3.2))
        axes.hist(data, bins=min(50, max(5, len(data) // 4)))
        axes.set_title(f"{name}: {len(data)} samples")
        axes.set_xlabel("score value")
        axes.set_ylabel("samples")
        figure.tight_layout()
        path = directory / f"hist_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths[name] = str(path)
    return paths
