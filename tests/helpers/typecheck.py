"""mypy --strict on a user's program, as a user's type checker would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def expected_errors(program: str) -> dict[int, str]:
    """Line number to the error code its `# E: code` comment names."""
    return {
        number: line.split("# E: ")[1].split()[0]
        for number, line in enumerate(program.splitlines(), 1)
        if "# E:" in line
    }


def mypy_strict(program: Path) -> tuple[dict[int, str], list[str]]:
    """mypy --strict on `program`: its errors (line to code) and its reveal_type notes, in order.

    This checkout's lbwire (MYPYPATH comes before installed packages), and no
    project configuration: the program is checked as a user's would be.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(program.parent / "cache"),
            str(program),
        ],
        cwd=program.parent,
        env=dict(os.environ, MYPYPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors: dict[int, str] = {}
    revealed: list[str] = []
    for line in result.stdout.splitlines():
        match = re.match(rf".*{re.escape(program.name)}:(\d+): (error|note): (.*)", line)
        assert match, result.stdout + result.stderr
        number, kind, message = int(match.group(1)), match.group(2), match.group(3)
        if kind == "note" and message.startswith("Revealed type is"):
            revealed.append(message)
        elif kind == "error":
            code = re.search(r"\[([a-z-]+)\]$", message)
            assert code, message
            assert number not in errors, result.stdout
            errors[number] = code.group(1)
    return errors, revealed
