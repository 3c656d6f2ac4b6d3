"""bench/compare.py's output: the ratio table (RST for docs/performance.rst, or Markdown), the
list of what each raw side calls, and every run as JSON."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

HEADER = ("Workload", "Backend", "Case", "keg s", "raw s", "keg / raw", "keg peak RSS")


def totals(runs: list[dict[str, Any]], part: int | None = None) -> list[float]:
    """Each run's seconds: the whole run, or its ``part``-th timed part."""
    if part is None:
        return [sum(run["parts"].values()) for run in runs]
    return [list(run["parts"].values())[part] for run in runs]


def spread(values: list[float]) -> str:
    """``median (min-max)`` in seconds."""
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.3f}"
    return f"{median:.3f} ({min(values):.3f}-{max(values):.3f})"


def ratio(keg: list[float], raw: list[float]) -> str:
    """Raw median over keg median, and the lowest and highest ratio of runs paired by number."""
    value = statistics.median(raw) / statistics.median(keg)
    paired = [r / k for k, r in zip(keg, raw, strict=False)]
    if len(paired) == 1:
        return f"{value:.2f}x"
    return f"{value:.2f}x ({min(paired):.2f}-{max(paired):.2f})"


def summarise(case: Any) -> dict[str, Any]:
    """The case's figures, for the table and the JSON alike."""
    keg, raw = case.runs["keg"], case.runs["raw"]
    summary: dict[str, Any] = {"keg_seconds": totals(keg), "raw_seconds": totals(raw)}
    if keg and raw:
        median = statistics.median(totals(raw)) / statistics.median(totals(keg))
        summary["ratio"] = round(median, 3)
    if keg:
        summary["keg_peak_rss_mib"] = round(max(run["peak_rss_mib"] for run in keg), 1)
    if raw:
        summary["raw_peak_rss_mib"] = round(max(run["peak_rss_mib"] for run in raw), 1)
    return summary


def case_rows(case: Any) -> list[tuple[str, ...]]:
    """The case's row, then one row per timed part where a run has several."""
    head = (case.workload, case.backend, case.variant)
    keg, raw = case.runs["keg"], case.runs["raw"]
    if case.skipped:
        return [(*head, case.skipped, spread(totals(raw)) if raw else "", "", "")]
    rss = f"{max(run['peak_rss_mib'] for run in keg):.0f} MiB"
    if not raw:
        alone = "keg only" if not case.raw else case.raw
        return [(*head, spread(totals(keg)), alone, "", rss)]
    rows = [(*head, spread(totals(keg)), spread(totals(raw)), ratio(totals(keg), totals(raw)), rss)]
    keg_parts, raw_parts = list(keg[0]["parts"]), list(raw[0]["parts"])
    if len(keg_parts) > 1:
        for number, (keg_part, raw_part) in enumerate(zip(keg_parts, raw_parts, strict=True)):
            name = keg_part if keg_part == raw_part else f"{keg_part} vs {raw_part}"
            keg_times, raw_times = totals(keg, number), totals(raw, number)
            rows.append(
                ("", "", f"part: {name}", spread(keg_times), spread(raw_times),
                 ratio(keg_times, raw_times), "")
            )  # fmt: skip
    return rows


def table_rows(cases: list[Any]) -> list[tuple[str, ...]]:
    """Every case's rows, in the order they ran."""
    return [row for case in cases for row in case_rows(case)]


def rst_table(rows: list[tuple[str, ...]]) -> str:
    """An RST simple table (an empty first cell continues nothing: each row is a row)."""
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]
    rule = "  ".join("=" * width for width in widths)

    def line(row: tuple[str, ...]) -> str:
        cells = [cell or ("\\" if i == 0 else "") for i, cell in enumerate(row)]
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "  ".join(padded).rstrip()

    return "\n".join([rule, line(HEADER), rule, *map(line, rows), rule])


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def raw_sides(cases: list[Any]) -> list[str]:
    """What the raw side of each backend and workload calls, once each."""
    seen: dict[str, None] = {}
    for case in cases:
        if case.raw:
            seen.setdefault(f"{case.backend} {case.workload}: {case.raw}", None)
    return list(seen)


def print_report(cases: list[Any], conditions: dict[str, Any], fmt: str) -> None:
    load = "/".join(f"{value:.1f}" for value in conditions["load_before"])
    after = "/".join(f"{value:.1f}" for value in conditions["load_after"])
    print(
        f"\n{conditions['command']}: medians of {conditions['runs']} runs (spread: min-max), "
        f"{conditions['cpus']} CPUs, load average {load} before and {after} after, "
        f"{conditions['minutes']} minutes. keg / raw above 1.00x: keg_storage is faster.\n"
    )
    rows = table_rows(cases)
    print(rst_table(rows) if fmt == "rst" else markdown_table(rows))
    print("\nRaw sides:\n")
    for line in raw_sides(cases):
        print(f"- {line}")


def write_json(path: Path, cases: list[Any], conditions: dict[str, Any]) -> None:
    data = {
        "conditions": conditions,
        "cases": [
            {
                "workload": case.workload,
                "backend": case.backend,
                "variant": case.variant,
                "raw": case.raw,
                "skipped": case.skipped,
                **summarise(case),
                "runs": case.runs,
            }
            for case in cases
        ],
    }
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)
