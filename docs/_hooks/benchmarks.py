"""mkdocs hook: the performance page's chart and tables come from the latest benchmark run.

`python -m benchmarks` writes `benchmarks/results/latest.json` and `latest.png`.
Rather than keep copies in docs/ that go stale, this hook adds the chart to the
site as `img/benchmarks.png` (the scale curves' as `img/scale.png`) and
replaces the markers `<!-- benchmarks:run -->`, `<!-- benchmarks:table -->`
and `<!-- benchmarks:targets -->` in a page with text rendered from the JSON.
`<!-- benchmarks:newest/table -->` (and `run`, `targets`) render the run
against the newest Liftbridge, `benchmarks/results/newest/latest.json`
(`python -m benchmarks --server newest --out benchmarks/results/newest`).
The text comes from `benchmarks/tables.py`, as the README's tables do. A
missing result file fails the build.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# The labels and the rendering are the benchmarks' own (benchmarks/tables.py,
# which the README's tables use too). The repository goes first on the import
# path: mkdocs puts this hook's folder there while it loads the hook, and this
# file's name would shadow the benchmarks package (mkdocs restores the path).
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from benchmarks import tables  # noqa: E402

RESULTS = Path("benchmarks") / "results"
CHART_URI = "img/benchmarks.png"
SCALE_URI = "img/scale.png"


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _load(config: MkDocsConfig, run: str = "") -> Dict[str, Any]:
    path = _root(config) / RESULTS / run / "latest.json"
    try:
        report: Dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PluginError(f"cannot read the benchmark results {path}: {exc}") from exc
    return report


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
    renderers = {
        "run": tables.run_line,
        "table": tables.results_table,
        "targets": tables.targets_table,
    }
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
