"""The program on docs/otel.md runs against the real server and prints what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lbwire.testing import LiftbridgeServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "otel.md"
#: A guard against hangs, never a speed expectation.
HANG_GUARD = 120.0


def test_the_pages_program_prints_what_the_page_shows(
    liftbridge_server: LiftbridgeServer, stream_name: str, tmp_path: Path
) -> None:
    page = PAGE.read_text()
    program = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    expected = re.search(r"It prints:\n\n```text\n(.*?)```", page, re.DOTALL)
    assert program is not None
    assert expected is not None
    script = tmp_path / "otel_example.py"
    script.write_text(program.group(1))
    result = subprocess.run(
        [sys.executable, str(script), liftbridge_server.broker, stream_name],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.group(1)
