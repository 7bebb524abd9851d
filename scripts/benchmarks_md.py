"""Write BENCHMARKS.md from a pytest-benchmark JSON file (`make bench` runs it).

Every figure is a ratio against the baseline of its group, measured in the same run: each suite names its
baseline in `extra_info["baseline"]` (the first word is matched against the benchmark names).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def ratio_table(benchmarks: list[dict]) -> list[str]:
    baseline_name = next((b["extra_info"].get("baseline") for b in benchmarks if b["extra_info"].get("baseline")), None)
    key = baseline_name.split()[0] if baseline_name else None
    baseline = next((b for b in benchmarks if key and key in b["name"]), None)
    lines = ["| benchmark | median | vs baseline |", "|---|---|---|"]
    for bench in sorted(benchmarks, key=lambda b: b["stats"]["median"]):
        median = bench["stats"]["median"]
        if baseline is None:
            versus = "no baseline in this group"
        elif bench is baseline:
            versus = "baseline"
        else:
            speedup = baseline["stats"]["median"] / median
            versus = f"{speedup:.2f}x the baseline's speed" if speedup >= 1 else f"{1 / speedup:.2f}x the baseline's time"
        lines.append(f"| `{bench['name']}` | {_time(median)} | {versus} |")
    return lines + other_ratios(benchmarks, key)


def other_ratios(benchmarks: list[dict], baseline_key: str | None) -> list[str]:
    """Ratios a suite reports against other members of its group (extra_info speed_vs_<name>), and how it
    timed them (extra_info timer, threads, rounds)."""
    lines = []
    for bench in benchmarks:
        info = bench["extra_info"]
        own = bench["name"].split("[")[-1].rstrip("]")
        for field, speed in sorted(info.items()):
            other = field.removeprefix("speed_vs_")
            if field.startswith("speed_vs_") and other not in (own, baseline_key):
                lines.append(f"- `{own}`: {speed:.2f}x the speed of `{other}`")
            if field.startswith("time_vs_"):  # a figure from another group, e.g. the same search on fewer items
                lines.append(f"- `{own}`: {speed:.2f}x the time of `{field.removeprefix('time_vs_')}`")
    timing = next((b["extra_info"] for b in benchmarks if "timer" in b["extra_info"]), None)
    if timing:
        lines.append(f"- timed by {timing['timer']}, {timing.get('threads', '?')} thread(s), "
                     f"{timing.get('rounds', '?')} rounds interleaved")
    return ["", *lines] if lines else []


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def render(report: dict) -> str:
    machine = report.get("machine_info", {})
    cpu = machine.get("cpu", {})
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in report["benchmarks"]:
        groups[bench.get("group") or "ungrouped"].append(bench)
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (scripts/benchmarks_md.py) from one pytest-benchmark run; every ratio compares",
        "two figures measured in that same run. Medians; lower time is better.",
        "",
        f"Machine: {cpu.get('brand_raw', machine.get('processor', 'unknown CPU'))}, "
        f"{cpu.get('count', '?')} cores, Python {machine.get('python_version', '?')}, {machine.get('system', '')} "
        f"{machine.get('release', '')}; run {report.get('datetime', '')[:10]}.",
        "",
    ]
    for group in sorted(groups):
        out += [f"## {group}", "", *ratio_table(groups[group]), ""]
    return "\n".join(out)


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    with open(source) as handle:
        report = json.load(handle)
    if not report.get("benchmarks"):
        print(f"{source}: no benchmarks were run", file=sys.stderr)
        return 1
    with open(target, "w") as handle:
        handle.write(render(report))
    print(f"wrote {target} ({len(report['benchmarks'])} benchmarks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
