"""``LBWIRE_TEST_TRIO_IN`` keeps the trio variants of tests only under the paths it names.

scripts/test.sh relies on it to run passes 3 and 4 mostly on asyncio; a
collection in a child pytest session shows what each setting selects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest
from helpers import HANG_GUARD

pytestmark = pytest.mark.one_interpreter

REPO = Path(__file__).resolve().parents[1]
FILES = ("tests/transport/test_connect.py", "tests/client/test_client_construction.py")


def collected(trio_in: Optional[str]) -> list[str]:
    """The node ids a collection of FILES selects with ``$LBWIRE_TEST_TRIO_IN`` as given."""
    env = dict(os.environ)
    env.pop("LBWIRE_TEST_TRIO_IN", None)
    if trio_in is not None:
        env["LBWIRE_TEST_TRIO_IN"] = trio_in
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *FILES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD * 4,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def everything() -> list[str]:
    return collected(None)


def test_unset_keeps_both_backends_everywhere(everything: list[str]) -> None:
    for path in FILES:
        ids = [node for node in everything if node.startswith(path)]
        assert any("[trio" in node for node in ids), path
        assert any("[asyncio" in node for node in ids), path


def test_a_path_keeps_trio_there_only(everything: list[str]) -> None:
    selected = collected("tests/transport")
    dropped = set(everything) - set(selected)
    assert dropped
    assert all("[trio" in node and node.startswith(FILES[1]) for node in dropped)
    assert any("[trio" in node for node in selected if node.startswith(FILES[0]))


def test_empty_keeps_asyncio_only(everything: list[str]) -> None:
    selected = collected("")
    assert not [node for node in selected if "[trio" in node]
    asyncio_ids = [node for node in everything if "[trio" not in node]
    assert selected == asyncio_ids
