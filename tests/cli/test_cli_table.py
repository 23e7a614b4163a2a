"""`lbwire table get|put|delete|watch`, end to end against the real server."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.one_interpreter


def test_table_put_get_compare_and_set_delete(lbwire, stream_name):
    first = int(lbwire("table", "put", stream_name, "mode", "fast").stdout)
    assert lbwire("table", "get", stream_name, "mode").stdout == b"fast\n"
    second = int(
        lbwire("table", "put", stream_name, "mode", "safe", "--expected", str(first)).stdout
    )
    assert second > first
    stale = lbwire("table", "put", stream_name, "mode", "x", "--expected", str(first), check=False)
    assert stale.returncode == 1
    assert f"is at revision {second}, not {first}" in stale.stderr.decode()
    entry = json.loads(lbwire("table", "get", stream_name, "mode", "--format", "json").stdout)
    assert entry == {
        "key": "mode",
        "value": "safe",
        "revision": second,
        "partition": 0,
        "deleted": False,
    }
    gone = int(lbwire("table", "delete", stream_name, "mode", "--expected", str(second)).stdout)
    assert gone > second
    missing = lbwire("table", "get", stream_name, "mode", check=False)
    assert missing.returncode == 4
    assert b"has no value" in missing.stderr
    lbwire("table", "put", stream_name, "other", "1")
    watched = lbwire("table", "watch", stream_name, "--count", "1")
    assert watched.stdout == b"other=1\n"


def test_table_get_of_a_missing_stream_is_not_found(lbwire, stream_name):
    assert lbwire("table", "get", stream_name, "k", check=False).returncode == 4
