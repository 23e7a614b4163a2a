"""`lbwire sub` over every partition of a stream, and `lbwire lag`, against the real server."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.one_interpreter


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def make_stream(lbwire, stream_name: str) -> None:
    """Three partitions holding "p-i", i < 3, each."""
    lbwire("stream", "create", stream_name, "--partitions", "3")
    for partition in range(3):
        values = [f"{partition}-{i}" for i in range(3)]
        lbwire("pub", stream_name, "--partition", str(partition), *values)


def test_sub_reads_every_partition_in_order_within_each(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    read = lbwire("sub", stream_name, "--from", "earliest", "--until", "latest")
    printed = lines(read.stdout)
    assert sorted(printed) == sorted(f"{p}-{i}" for p in range(3) for i in range(3))
    for partition in range(3):
        assert [v for v in printed if v.startswith(f"{partition}-")] == [
            f"{partition}-{i}" for i in range(3)
        ]


def test_sub_from_and_until_apply_to_each_partition(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    read = lbwire("sub", stream_name, "--from", "1", "--until", "1")
    assert sorted(lines(read.stdout)) == ["0-1", "1-1", "2-1"]


def test_sub_count_is_the_total(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "5")
    assert len(lines(read.stdout)) == 5


def test_sub_partition_narrows_it(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    read = lbwire("sub", stream_name, "--partition", "2", "--from", "earliest", "--until", "latest")
    assert lines(read.stdout) == ["2-0", "2-1", "2-2"]


def test_sub_cursor_keeps_one_cursor_per_partition(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    first = lbwire("sub", stream_name, "--cursor", "c", "--from", "earliest", "--count", "4")
    second = lbwire("sub", stream_name, "--cursor", "c", "--from", "earliest", "--until", "latest")
    everything = sorted(f"{p}-{i}" for p in range(3) for i in range(3))
    assert sorted(lines(first.stdout) + lines(second.stdout)) == everything
    for partition in range(3):
        assert lbwire("cursor", "get", stream_name, "c", "--partition", str(partition)).stdout == (
            b"3\n"
        )


def test_sub_reverse_needs_partition(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    done = lbwire("sub", stream_name, "--reverse", check=False)
    assert done.returncode == 2
    assert b"--reverse needs --partition" in done.stderr


def test_lag_shows_each_partition(lbwire, stream_name):
    make_stream(lbwire, stream_name)
    lbwire(
        "sub",
        stream_name,
        "--partition",
        "1",
        "--cursor",
        "c",
        "--from",
        "earliest",
        "--count",
        "2",
    )
    table = lines(lbwire("lag", stream_name, "--cursor", "c").stdout)
    assert table[0].split() == ["PARTITION", "HIGH", "WATERMARK", "COMMITTED", "LAG"]
    assert [row.split() for row in table[1:]] == [
        ["0", "2", "-", "3"],
        ["1", "2", "2", "1"],
        ["2", "2", "-", "3"],
    ]
    rows = [
        json.loads(line)
        for line in lines(lbwire("lag", stream_name, "--cursor", "c", "--format", "json").stdout)
    ]
    assert rows[1] == {"partition": 1, "high_watermark": 2, "committed": 2, "lag": 1}
    assert len(rows) == 3


def test_lag_of_a_missing_stream(lbwire, stream_name):
    done = lbwire("lag", stream_name, "--cursor", "c", check=False)
    assert done.returncode != 0
    assert b"Traceback" not in done.stderr
