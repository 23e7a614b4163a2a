"""Markdown of a benchmark run: the results table, the run's line, the targets.

The documentation's build hook (docs/_hooks/benchmarks.py) and the README's
tables (scripts/readme_tables.py) both render runs with these functions, so
the two never disagree. Only the standard library and `_common` are imported.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ._common import CELL_NOTES, SCENARIOS


def number(value: float, unit: str) -> str:
    """`value` as tables show it: rates above 10,000 in thousands, else whole."""
    if unit in ("msgs/s", "pairs/s"):
        return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def cell(entry: Optional[Dict[str, Any]], absent: str = "-", *, spread: bool = True) -> str:
    """A client's median in a scenario, ± half the range of the rounds (with `spread`)."""
    if entry is None:
        return absent
    value, width = float(entry["value"]), float(entry["spread"])
    text = number(value, entry["unit"])
    if spread and width and value:
        text += f" ±{width / 2 / value * 100:.0f}%"
    return text


def label(key: str) -> str:
    """The row label of a scenario: what it measures and its unit."""
    return f"{SCENARIOS[key]['label']} ({SCENARIOS[key]['unit']})"


def run_line(report: Dict[str, Any]) -> str:
    """One sentence saying when, where and how the run was made."""
    return (
        f"Run of {report['date'][:10]} ({report['mode']} mode, {report['duration_s']:.0f} s): "
        f"{report['server']}, {report['python']}, {report['machine']}. "
        "Median of the rounds, ± half their range."
    )


def results_table(report: Dict[str, Any], *, footnotes: bool = True) -> str:
    """The run's results, a row per scenario and a column per client.

    A client without a figure where the run noted why gets ``n/a (n)`` and
    the reason as footnote n; without `footnotes` (the README, which explains
    these in its text) the cell holds its `CELL_NOTES` text, or nothing.
    """
    results = report["results"]
    notes = report.get("notes") or {}
    # Clients in the run's own order (the run writes them in benchmarks'
    # client order), so a table never lists them apart from the benchmarks.
    clients: List[str] = []
    for per in results.values():
        clients.extend(c for c in per if c not in clients)
    lines = [_row(["scenario (unit)", *clients]), "|---" * (len(clients) + 1) + "|"]
    explained: List[str] = []
    for key in SCENARIOS:
        if key not in results:
            continue
        cells = []
        for client in clients:
            entry = results[key].get(client)
            aside = CELL_NOTES.get(key, {}).get(client, "")
            if entry is not None:
                shown = cell(entry, spread=SCENARIOS[key].get("spread", True))
                cells.append(shown + (f" ({aside})" if aside else ""))
            elif footnotes and client in notes.get(key, {}):
                explained.append(f"{label(key)}, {client}: {notes[key][client]}")
                cells.append(f"n/a ({len(explained)})")
            else:
                cells.append(aside)
        lines.append(_row([label(key), *cells]))
    if explained:
        lines.append("")
        lines.extend(f"{n}. {text}" for n, text in enumerate(explained, 1))
    return "\n".join(lines)


def _row(cells: List[str]) -> str:
    return "|" + "|".join(f" {text} " if text else " " for text in cells) + "|"


def targets_table(report: Dict[str, Any]) -> str:
    """The issue's targets as the run met them (or not)."""
    lines = ["| target | ratio in this run | goal | met |", "|---|---|---|---|"]
    for target in report.get("targets", []):
        ratio = "" if target["ratio"] is None else f"{target['ratio']:.2f}"
        met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
        name = target["target"] + (f" ({target['detail']})" if target["detail"] else "")
        lines.append(f"| {name} | {ratio} | {target['goal']} | {met} |")
    return "\n".join(lines)
