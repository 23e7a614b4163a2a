"""What the code generators in scripts/ share: write their output, or check it with --check."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def write_or_check(output: Path, text: str, *, check: bool, stale: str) -> int:
    """Write `text` to `output`; with `check`, compare instead and say `stale` if they differ.

    Returns the exit status: 1 for a stale file, else 0.
    """
    if not check:
        output.write_text(text, encoding="utf-8")
        return 0
    current = output.read_text(encoding="utf-8") if output.exists() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        str(output),
        "generated",
        n=1,
    )
    sys.stderr.writelines(list(diff)[:40])
    print(stale, file=sys.stderr)
    return 1
