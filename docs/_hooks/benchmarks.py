"""mkdocs hook: the performance page's chart and tables come from the latest benchmark run.

`python -m benchmarks` writes `benchmarks/results/latest.json` and `latest.png`.
Rather than keep copies in docs/ that go stale, this hook adds the chart to the
site as `img/benchmarks.png` (the scale curves' as `img/scale.png`) and
replaces the markers `<!-- benchmarks:run -->`, `<!-- benchmarks:table -->`
and `<!-- benchmarks:targets -->` in a page with text rendered from the JSON.
`<!-- benchmarks:newest/table -->` (and `run`, `targets`) render the run
against the newest Liftbridge, `benchmarks/results/newest/latest.json`
(`python -m benchmarks --server newest --out benchmarks/results/newest`).
A missing result file fails the build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

RESULTS = Path("benchmarks") / "results"
CHART_URI = "img/benchmarks.png"
SCALE_URI = "img/scale.png"

# The benchmark's scenario keys, in table order, with the label a reader sees.
LABELS = {
    "subscribe_100B": "subscribe 100 B (msgs/s)",
    "subscribe_1KiB": "subscribe 1 KiB (msgs/s)",
    "publish_unacked": "sequential publish, unacked (msgs/s)",
    "publish_acked": "sequential publish, acked (msgs/s)",
    "publish_acked_p99_ms": "acked publish p99 (ms)",
    "publish_pipelined": "pipelined publish, 1,000 in flight (msgs/s)",
    "cursor_roundtrip": "cursor set + get (pairs/s)",
    "first_message_ms": "connect to first message (ms)",
    "first_message_warm_ms": "connect to first message, warm (ms)",
    "import_ms": "import of the client package (ms)",
    "subscribe_peak_rss_mb": "peak RSS subscribing to 1,000,000 messages (MB)",
}


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _load(config: MkDocsConfig, run: str = "") -> Dict[str, Any]:
    path = _root(config) / RESULTS / run / "latest.json"
    try:
        report: Dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PluginError(f"cannot read the benchmark results {path}: {exc}") from exc
    return report


def _number(value: float, unit: str) -> str:
    if unit in ("msgs/s", "pairs/s"):
        return f"{value / 1000:.1f}k" if value >= 10_000 else f"{value:,.0f}"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def _cell(entry: Dict[str, Any]) -> str:
    value, spread = float(entry["value"]), float(entry["spread"])
    text = _number(value, entry["unit"])
    if spread and value:
        text += f" ±{spread / 2 / value * 100:.0f}%"
    return text


def _run(report: Dict[str, Any]) -> str:
    return (
        f"Run of {report['date'][:10]} ({report['mode']} mode, {report['duration_s']:.0f} s): "
        f"{report['server']}, {report['python']}, {report['machine']}. "
        "Median of the rounds, ± half their range."
    )


def _table(report: Dict[str, Any]) -> str:
    results = report["results"]
    notes = report.get("notes") or {}
    # Clients in the run's own order (the run writes them in benchmarks'
    # client order), so this page never lists them apart from the benchmarks.
    clients: List[str] = []
    for per in results.values():
        clients.extend(c for c in per if c not in clients)
    lines = ["| scenario (unit) | " + " | ".join(clients) + " |"]
    lines.append("|---" * (len(clients) + 1) + "|")
    footnotes: List[str] = []
    for key, label in LABELS.items():
        if key not in results:
            continue
        cells = []
        for client in clients:
            entry = results[key].get(client)
            if entry is not None:
                cells.append(_cell(entry))
            elif client in notes.get(key, {}):
                footnotes.append(f"{label}, {client}: {notes[key][client]}")
                cells.append(f"n/a ({len(footnotes)})")
            else:
                cells.append("")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if footnotes:
        lines.append("")
        lines.extend(f"{n}. {text}" for n, text in enumerate(footnotes, 1))
    return "\n".join(lines)


def _targets(report: Dict[str, Any]) -> str:
    lines = ["| target | ratio in this run | goal | met |", "|---|---|---|---|"]
    for target in report.get("targets", []):
        ratio = "" if target["ratio"] is None else f"{target['ratio']:.2f}"
        met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
        name = target["target"] + (f" ({target['detail']})" if target["detail"] else "")
        lines.append(f"| {name} | {ratio} | {target['goal']} | {met} |")
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the latest benchmark chart to the site."""
    chart = _root(config) / RESULTS / "latest.png"
    if not chart.is_file():
        raise PluginError(f"the benchmark chart {chart} is missing (python -m benchmarks)")
    files.append(File.generated(config, CHART_URI, abs_src_path=str(chart)))
    scale = _root(config) / RESULTS / "scale.png"
    if not scale.is_file():
        raise PluginError(f"the scale chart {scale} is missing (python -m benchmarks.scale)")
    files.append(File.generated(config, SCALE_URI, abs_src_path=str(scale)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Fill in the benchmark markers of a page."""
    if "<!-- benchmarks:" not in markdown:
        return markdown
    renderers = {"run": _run, "table": _table, "targets": _targets}
    reports: Dict[str, Dict[str, Any]] = {}

    def fill(match: re.Match[str]) -> str:
        run, what = match.group(1) or "", match.group(2)
        if what not in renderers or run not in ("", "newest"):
            raise PluginError(f"{page.file.src_uri}: unknown marker {match.group(0)}")
        if run not in reports:
            reports[run] = _load(config, run)
        return renderers[what](reports[run])

    markdown = re.sub(r"<!-- benchmarks:(?:(\w+)/)?(\w+) -->", fill, markdown)
    return markdown
