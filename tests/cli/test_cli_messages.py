"""`lbwire pub`, `sub`, `cursor` and `group consume`, end to end against the real server."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest

from lbwire.cli.sub import parse_from, parse_until
from lbwire.types import StartPosition, StopPosition

pytestmark = pytest.mark.one_interpreter


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def test_pub_from_stdin_then_sub_with_count(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    values = [str(i) for i in range(1, 2001)]
    published = lbwire("pub", stream_name, input="\n".join(values) + "\n")
    assert published.stdout == b""
    assert "published 2,000 messages" in published.stderr.decode()

    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "2000")
    assert lines(read.stdout) == values


def test_pub_keeps_empty_lines_and_a_last_line_without_newline(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, input=b"a\r\n\nb")
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "3")
    assert read.stdout == b"a\n\nb\n"


def test_pub_values_from_arguments(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "one", "two", "-q")
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "2")
    assert lines(read.stdout) == ["one", "two"]


def test_json_output_parses_back_with_key_headers_and_partition(lbwire, stream_name):
    lbwire("stream", "create", stream_name, "--partitions", "2")
    before = datetime.now(timezone.utc)
    lbwire(
        "pub",
        stream_name,
        "--partition",
        "1",
        "--key",
        "k1",
        "--header",
        "a=b",
        "--ack",
        "all",
        "héllo",
    )
    read = lbwire(
        "sub",
        stream_name,
        "--partition",
        "1",
        "--from",
        "earliest",
        "--count",
        "1",
        "--format",
        "json",
    )
    record = json.loads(read.stdout)
    assert record["stream"] == stream_name
    assert record["partition"] == 1
    assert record["offset"] == 0
    assert record["encoding"] == "utf-8"
    assert record["value"] == "héllo"
    assert record["key"] == "k1"
    assert record["headers"]["a"] == "b"
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert abs((stamp - before).total_seconds()) < 60


def test_json_output_of_binary_values_is_base64(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, input=b"\xff\xfe\x00\n")
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "1", "--format", "json")
    record = json.loads(read.stdout)
    assert record["encoding"] == "base64"
    assert base64.b64decode(record["value"]) == b"\xff\xfe\x00"


def test_pub_with_key_goes_to_the_partition_the_key_hashes_to(lbwire, stream_name):
    import zlib

    lbwire("stream", "create", stream_name, "--partitions", "3")
    lbwire("pub", stream_name, "--key", "customer-7", "x")
    partition = zlib.crc32(b"customer-7") % 3
    read = lbwire(
        "sub", stream_name, "--partition", str(partition), "--from", "earliest", "--count", "1"
    )
    assert read.stdout == b"x\n"


def test_sub_from_offset_and_from_time(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "a", "b", "c")
    assert lbwire("sub", stream_name, "--from", "1", "--count", "2").stdout == b"b\nc\n"
    # Every message was received in the last hour, and none after a minute from now.
    assert lbwire("sub", stream_name, "--from", "-1h", "--count", "1").stdout == b"a\n"
    since = datetime.now(timezone.utc).isoformat()
    lbwire("pub", stream_name, "d")
    assert lbwire("sub", stream_name, "--from", since, "--count", "1").stdout == b"d\n"


def test_parse_from_understands_every_form():
    assert parse_from("earliest") == {"start_position": StartPosition.EARLIEST}
    assert parse_from("LATEST") == {"start_position": StartPosition.LATEST}
    assert parse_from("new") == {"start_position": StartPosition.NEW_ONLY}
    assert parse_from("42") == {"start_offset": 42}
    assert parse_from("-5m", now=1000.0) == {"start_timestamp": 700.0}
    assert parse_from("-2h", now=10000.0) == {"start_timestamp": 2800.0}
    assert parse_from("-1.5s", now=10.0) == {"start_timestamp": 8.5}
    assert parse_from("1970-01-01T00:01:00Z") == {"start_timestamp": 60.0}
    assert parse_from("1970-01-01T01:00:00+01:00") == {"start_timestamp": 0.0}


def test_parse_until_understands_every_form():
    assert parse_until("latest") == {"stop_position": StopPosition.STOP_LATEST}
    assert parse_until("7") == {"stop_offset": 7}
    assert parse_until("-1m", now=100.0) == {"stop_timestamp": 40.0}
    assert parse_until("1970-01-01T00:00:10Z") == {"stop_timestamp": 10.0}


def test_sub_until_latest_prints_what_is_there_and_exits(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    assert lbwire("sub", stream_name, "--from", "earliest", "--until", "latest").stdout == b""
    lbwire("pub", stream_name, "a", "b", "c")
    assert lbwire("sub", stream_name, "--from", "earliest", "--until", "latest").stdout == (
        b"a\nb\nc\n"
    )
    assert lbwire("sub", stream_name, "--from", "earliest", "--until", "1").stdout == b"a\nb\n"


def test_cursor_set_then_get_round_trips(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    assert lbwire("cursor", "get", stream_name, "reports").stdout == b"-1\n"
    lbwire("cursor", "set", stream_name, "reports", "41")
    # The cursor holds the next offset to read: one after the last processed.
    assert lbwire("cursor", "get", stream_name, "reports").stdout == b"42\n"


def test_sub_with_cursor_resumes_where_it_left_off(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, input="".join(f"m{i}\n" for i in range(10)))
    first = lbwire("sub", stream_name, "--cursor", "c", "--from", "earliest", "--count", "4")
    assert lines(first.stdout) == ["m0", "m1", "m2", "m3"]
    assert lbwire("cursor", "get", stream_name, "c").stdout == b"4\n"
    # --from applies only while the cursor holds nothing.
    second = lbwire("sub", stream_name, "--cursor", "c", "--from", "latest", "--count", "3")
    assert lines(second.stdout) == ["m4", "m5", "m6"]
    assert lbwire("cursor", "get", stream_name, "c").stdout == b"7\n"


def test_pub_shows_progress_when_asked(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    done = lbwire("pub", stream_name, "--progress", input="x\n" * 10)
    assert "published 10 messages" in done.stderr.decode()
    quiet = lbwire("pub", stream_name, "-q", input="x\n" * 10)
    assert quiet.stderr == b""


def test_group_consume_reads_the_streams_of_the_group(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "a", "b", "c")
    read = lbwire(
        "group",
        "consume",
        "g-" + stream_name,
        stream_name,
        "--from",
        "earliest",
        "--count",
        "3",
        "--format",
        "json",
    )
    records = [json.loads(line) for line in lines(read.stdout)]
    assert [r["value"] for r in records] == ["a", "b", "c"]
    assert {r["stream"] for r in records} == {stream_name}
    # The group committed its position: a new member of it starts after "c".
    group_cursor = lbwire("cursor", "get", stream_name, f"__group:g-{stream_name}")
    assert group_cursor.stdout == b"2\n"


@pytest.mark.parametrize("ack", ["none", "leader", "all"])
def test_pub_ack_policies(lbwire, stream_name, ack):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "--ack", ack, input="1\n2\n3\n")
    assert lbwire("sub", stream_name, "--from", "earliest", "--count", "3").stdout == b"1\n2\n3\n"
