#!/usr/bin/env python3
"""Write the README's performance tables from the benchmark results.

    python scripts/readme_tables.py            rewrite the tables in README.md
    python scripts/readme_tables.py --check    exit 1 if a table differs from its results

Each table sits between two markers naming the run it shows, a results file
relative to the repository::

    <!-- benchmarks:table benchmarks/results/latest.json -->
    | scenario (unit) | ... |
    <!-- /benchmarks:table -->

and is rendered by `benchmarks/tables.py`, as the documentation's performance
page is, so a new run (`python -m benchmarks`) reaches the README with this
script and the site on its next build.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.tables import results_table  # noqa: E402

README = REPO / "README.md"
_TABLE = re.compile(
    r"(?P<open><!-- benchmarks:table (?P<path>\S+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- /benchmarks:table -->)",
    re.DOTALL,
)


def render(text: str, root: Path) -> str:
    """`text` with every marked table rendered anew from its results file under `root`."""

    def table(match: re.Match[str]) -> str:
        path = root / match.group("path")
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"readme_tables: cannot read {path}: {exc}") from exc
        # No footnotes: the README's prose says why a client has no figure.
        body = results_table(report, footnotes=False)
        return f"{match.group('open')}{body}\n{match.group('close')}"

    rendered, count = _TABLE.subn(table, text)
    if count == 0:
        raise SystemExit("readme_tables: no <!-- benchmarks:table PATH --> markers found")
    return rendered


def main(argv: List[str]) -> int:
    """Rewrite (or with --check, compare) the README's tables; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    parser.add_argument("--readme", type=Path, default=README, help="the file to render")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    rendered = render(current, REPO)
    if args.check:
        if rendered == current:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            f"{args.readme} (as it is)",
            f"{args.readme} (from the results)",
        )
        sys.stdout.writelines(diff)
        print(f"{args.readme}: stale tables; run python scripts/readme_tables.py", file=sys.stderr)
        return 1
    if rendered != current:
        args.readme.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
