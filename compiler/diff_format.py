"""Rendering a SpecDiff: text in the style of `terraform plan`, markdown for pull requests, JSON, and
the stage-graph diff as DOT."""

from __future__ import annotations

import json
from typing import Any

from compiler.diff import SECTIONS, Change, SpecDiff

SYMBOLS = {"added": "+", "removed": "-", "changed": "~", "replaced": "-/+", "moved": "=>"}
COLOURS = {"added": "green", "removed": "red", "changed": "yellow", "replaced": "magenta", "moved": "cyan"}


def show_value(value: Any, limit: int = 160) -> str:
    """A value on one line: big counts with separators, items as {key: value, ...}."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10_000:
        text = f"{int(value):,}"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {show_value(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(show_value(v, limit) for v in value) + "]"
    elif value is None:
        text = "(none)"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _headline(change: Change) -> str:
    symbol = SYMBOLS[change.kind]
    if change.kind == "changed" and _text_lists(change):
        added, removed = _list_edits(change)
        body = f"{change.path}: {len(added)} item(s) added, {len(removed)} removed"
    elif change.kind == "changed" and change.detail == "provenance only":
        body = f"{change.path}: {show_value(change.after)} (provenance only)"
    elif change.kind == "changed":
        body = f"{change.path}: {show_value(change.before)} -> {show_value(change.after)}"
    elif change.kind == "replaced":
        body = f"{change.path}: replaced, {change.detail}"
    elif change.kind == "moved":
        body = f"{change.path}: moved, {change.detail}"
    else:
        body = f"{change.path} ({change.detail})"
    return f"{symbol} {body}"


def _text_lists(change: Change) -> bool:
    return all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (change.before, change.after))


def _list_edits(change: Change) -> tuple[list[str], list[str]]:
    added = [item for item in change.after if item not in change.before]
    removed = [item for item in change.before if item not in change.after]
    return added, removed


def _details(change: Change) -> list[str]:
    lines = []
    if change.kind == "changed" and _text_lists(change):
        added, removed = _list_edits(change)
        return [f"- {show_value(item)}" for item in removed] + [f"+ {show_value(item)}" for item in added]
    if change.kind in ("added", "replaced") and change.after is not None:
        lines.append(f"after:  {show_value(change.after, 400)}")
    if change.kind in ("removed", "replaced") and change.before is not None:
        lines.insert(0, f"before: {show_value(change.before, 400)}")
    before = change.before_provenance.describe() if change.before_provenance else None
    after = change.after_provenance.describe() if change.after_provenance else None
    if before != after and change.kind in ("changed", "replaced"):
        lines.append(f"provenance: {before or '(none)'} -> {after or '(none)'}")
    elif after and change.kind == "added":
        lines.append(f"provenance: {after}")
    elif before and change.kind == "removed":
        lines.append(f"provenance: {before}")
    return lines


def summary_line(result: SpecDiff) -> str:
    counts = result.counts()
    parts = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    return f"Summary: {parts}; {result.unchanged} unchanged values hidden."


def to_text(result: SpecDiff, colour: bool = False) -> str:
    """Plain text, one block per section; rich markup when `colour`."""
    lines = [f"genspec diff {result.a} -> {result.b}", ""]
    if not result.changes:
        lines.append("No differences.")
    for section in SECTIONS:
        changes = [c for c in result.changes if c.section == section]
        if not changes:
            continue
        lines.append(f"{section}:")
        for change in changes:
            head = _headline(change)
            if colour:
                from rich.markup import escape

                head = f"[{COLOURS[change.kind]}]{escape(head)}[/]"
                lines.append("  " + head)
                lines.extend("      " + escape(d) for d in _details(change))
            else:
                lines.append("  " + head)
                lines.extend("      " + d for d in _details(change))
        lines.append("")
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"


def to_markdown(result: SpecDiff) -> str:
    """A markdown section for a pull request description."""
    out = [f"### `{result.a}` → `{result.b}`", "", summary_line(result), ""]
    for section in SECTIONS:
        changes = [c for c in result.changes if c.section == section]
        if not changes:
            continue
        out += [f"#### {section}", "", "| | path | before | after | provenance |", "|---|---|---|---|---|"]
        for change in changes:
            before, after = show_value(change.before, 120), show_value(change.after, 120)
            if change.kind == "moved":
                before, after = change.detail.split(" -> ")
            cells = [f"`{SYMBOLS[change.kind]}` {change.kind}", f"`{change.path}`", before, after,
                     _provenance_cell(change)]
            out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
        out.append("")
    return "\n".join(out)


def _provenance_cell(change: Change) -> str:
    before = change.before_provenance.describe() if change.before_provenance else ""
    after = change.after_provenance.describe() if change.after_provenance else ""
    if before and after and before != after:
        return f"{before} → {after}"
    return after or before


def to_json(result: SpecDiff) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def graph_dot(result: SpecDiff, graph_a: Any, graph_b: Any) -> str:
    """The union of two stage graphs as DOT: added nodes green, removed red, changed orange."""
    nodes_a, nodes_b = set(graph_a.nodes), set(graph_b.nodes)
    changed = {_node_of(c.path) for c in result.changes if c.kind in ("changed", "replaced", "moved")}
    lines = [f'digraph "{result.a} -> {result.b}" {{', "  rankdir=LR;", '  node [style=filled, fillcolor=white];']
    for node in sorted(nodes_a | nodes_b):
        if node not in nodes_a:
            colour, note = "palegreen", "added"
        elif node not in nodes_b:
            colour, note = "lightpink", "removed"
        elif node in changed:
            colour, note = "orange", "changed"
        else:
            colour, note = "white", ""
        label = node + (f"\\n({note})" if note else "")
        lines.append(f'  "{node}" [label="{label}", fillcolor={colour}];')
    pairs = {(u, v) for u, v, *_ in graph_a.edges} | {(u, v) for u, v, *_ in graph_b.edges}
    for u, v in sorted(pairs):
        in_a, in_b = graph_a.has_edge(u, v), graph_b.has_edge(u, v)
        style = "" if in_a and in_b else (" [color=darkgreen]" if in_b else " [color=red, style=dashed]")
        lines.append(f'  "{u}" -> "{v}"{style};')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_of(path: str) -> str | None:
    """The stage-graph node a change path belongs to (ids as compiler.graph builds them)."""
    import re

    if m := re.match(r"data\.pipelines\[([^\]]+)\]\.ops\[([^\]]+)\]", path):
        return f"op:{m.group(1)}/{m.group(2)}"
    for pattern, prefix in ((r"data\.datasets\[([^\]]+)\]", "dataset"), (r"data\.sources\[([^\]]+)\]", "source"),
                            (r"schedule\.stages\[([^\]]+)\]", "stage")):
        if m := re.match(pattern, path):
            return f"{prefix}:{m.group(1)}"
    return None
