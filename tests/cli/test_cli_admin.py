"""`lbwire stream`, `metadata`, `group describe`, `activity`, help, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from cli_support import (
    COMMAND_TIMEOUT,
    command_env,
    end_command,
    lbwire_argv,
    run_command,
    start_command,
)
from helpers.servers import by_generation

from lbwire.sync import LiftbridgeClient as SyncClient
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.one_interpreter


def test_stream_create_list_delete(lbwire, stream_name):
    created = lbwire(
        "stream", "create", stream_name, "--partitions", "2", "--subject", "s." + stream_name
    )
    assert created.returncode == 0
    assert stream_name in lbwire("stream", "list").stdout.decode().split()
    names = json.loads(lbwire("stream", "list", "--format", "json").stdout)
    assert stream_name in names
    assert "__cursors" not in names
    assert "__cursors" in json.loads(lbwire("stream", "list", "--all", "--format", "json").stdout)

    again = lbwire("stream", "create", stream_name, check=False)
    assert again.returncode == 6
    assert again.stderr.decode().startswith("lbwire: error: ")
    assert "already exists" in again.stderr.decode()
    assert lbwire("stream", "create", stream_name, "--exist-ok").returncode == 0

    lbwire("stream", "delete", stream_name)
    assert stream_name not in lbwire("stream", "list").stdout.decode().split()
    gone = lbwire("stream", "delete", stream_name, check=False)
    assert gone.returncode == 4
    assert "does not exist" in gone.stderr.decode()


def test_metadata_json_and_table(lbwire, liftbridge_server, stream_name):
    lbwire("stream", "create", stream_name, "--partitions", "2")
    lbwire("pub", stream_name, "--partition", "1", "a", "b")
    data = json.loads(lbwire("metadata", "--format", "json").stdout)
    [broker] = data["brokers"]
    assert f"{broker['host']}:{broker['port']}" == liftbridge_server.broker
    [stream] = [s for s in data["streams"] if s["name"] == stream_name]
    assert [p["id"] for p in stream["partitions"]] == [0, 1]
    one = stream["partitions"][1]
    assert one["leader"] == broker["id"]
    assert one["isr"] == [broker["id"]]
    assert one["newest_offset"] == 1

    table = lbwire("metadata", stream_name).stdout.decode()
    assert liftbridge_server.broker in table
    rows = [line.split() for line in table.splitlines() if line.startswith(stream_name)]
    assert [row[2] for row in rows] == ["0", "1"]
    assert "ISR" in table


def test_metadata_of_a_missing_stream_exits_4(lbwire, stream_name):
    done = lbwire("metadata", stream_name, check=False)
    assert done.returncode == 4
    assert done.stderr.decode() == f"lbwire: error: stream '{stream_name}' does not exist\n"


def test_group_describe_shows_coordinator_and_epoch(lbwire, liftbridge_server, stream_name):
    group = "g-" + stream_name
    lbwire("stream", "create", stream_name)
    with SyncClient([liftbridge_server.broker]) as client:
        client.wait_for_cursors()
        joined = client.join_consumer_group(group, "member-1", [stream_name])
        try:
            described = json.loads(lbwire("group", "describe", group, "--format", "json").stdout)
            table = lbwire("group", "describe", group).stdout.decode()
        finally:
            client.leave_consumer_group(group, "member-1")
    assert described == {
        "group_id": group,
        "coordinator": joined.coordinator,
        "coordinator_address": liftbridge_server.broker,
        "epoch": joined.epoch,
    }
    header, row = table.splitlines()
    assert header.split() == ["GROUP", "COORDINATOR", "ADDRESS", "EPOCH"]
    assert row.split() == [group, joined.coordinator, liftbridge_server.broker, str(joined.epoch)]


def test_group_describe_of_a_missing_group_exits_4(lbwire, stream_name):
    done = lbwire("group", "describe", stream_name, check=False)
    assert done.returncode == 4
    assert done.stderr.decode() == f"lbwire: error: consumer group '{stream_name}' does not exist\n"


def test_readonly_refuses_pub_until_turned_off(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("stream", "readonly", stream_name)
    refused = lbwire("pub", stream_name, "x", check=False)
    assert refused.returncode == 1
    assert "read-only" in refused.stderr.decode()
    assert b"Traceback" not in refused.stderr
    lbwire("stream", "readonly", stream_name, "--off")
    lbwire("pub", stream_name, "x")


def test_pause_then_sub_needs_resume(lbwire, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "x")
    lbwire("stream", "pause", stream_name)
    metadata = json.loads(lbwire("metadata", stream_name, "--format", "json").stdout)
    assert metadata["streams"][0]["partitions"][0]["paused"] is True
    refused = lbwire("sub", stream_name, "--from", "earliest", "--count", "1", check=False)
    assert refused.returncode == 1
    assert "--resume" in refused.stderr.decode()
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "1", "--resume")
    assert read.stdout == b"x\n"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [("metadata",), ("stream", "list"), ("pub", "demo", "x"), ("sub", "demo", "--count", "1")],
)
def test_unreachable_broker_exits_3_with_one_line(lbwire_popen, args):
    port = closed_port()
    started = time.monotonic()
    process = lbwire_popen(*args, "--timeout", "3", brokers=f"127.0.0.1:{port}")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 3
    text = err.decode()
    assert text.startswith(f"lbwire: error: cannot reach Liftbridge at 127.0.0.1:{port}")
    assert text.count("\n") == 1
    # Within --timeout and process start-up, not the library's retry budget.
    assert time.monotonic() - started < 20


def test_pub_create_makes_a_missing_stream(lbwire, stream_name):
    lbwire("pub", stream_name, "--create", "first")
    lbwire("pub", stream_name, "--create", "second")
    read = lbwire("sub", stream_name, "--from", "earliest", "--count", "2")
    assert read.stdout == b"first\nsecond\n"


def test_missing_stream_exits_4(lbwire, stream_name):
    for args in (("sub", stream_name, "--count", "1"), ("pub", stream_name, "x")):
        done = lbwire(*args, check=False)
        assert done.returncode == 4, args
        assert done.stderr.decode().startswith("lbwire: error: stream ")
        assert done.stderr.count(b"\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("sub", "s", "--from", "yesterday"),
        ("pub", "s", "--header", "no-equals-sign", "x"),
        ("sub", "s", "--count", "0"),
        ("sub",),
        ("stream", "create"),
        ("frobnicate",),
        (),
    ],
)
def test_bad_arguments_exit_2(lbwire, args):
    done = lbwire(*args, check=False)
    assert done.returncode == 2
    assert b"Traceback" not in done.stderr
    assert b"error: " in done.stderr


def test_reverse_on_a_v1_server_is_a_clear_error(lbwire, stream_name, liftbridge_server):
    lbwire("stream", "create", stream_name)
    done = lbwire("sub", stream_name, "--partition", "0", "--reverse", "--count", "1", check=False)
    if by_generation(liftbridge_server, v1_9_0=True, newest=False):
        assert done.returncode == 7
        assert done.stderr.decode().startswith("lbwire: error: --reverse is not supported")
    else:
        # The newest server reads backwards: an empty partition ends at once.
        assert done.returncode == 0, done.stderr
        assert done.stdout == b""


@pytest.fixture(scope="module")
def activity_server() -> Iterator[LiftbridgeServer]:
    """A real server that writes its activity stream."""
    with LiftbridgeServer(config_overrides={"activity.stream.enabled": True}) as server:
        yield server


def test_activity_prints_one_event_per_change(activity_server, stream_name):
    def run(*args: str) -> None:
        done = run_command(lbwire_argv(*args), command_env(activity_server.broker))
        assert done.returncode == 0, done.stderr

    run("stream", "create", stream_name)
    run("stream", "delete", stream_name)
    # The command follows the stream: read until our two events have come.
    command = start_command(
        lbwire_argv("activity", "--from", "earliest", "--format", "json"),
        command_env(activity_server.broker),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ours = []
    try:
        assert command.stdout is not None
        for line in command.stdout:
            event = json.loads(line)
            if event.get("stream") == stream_name:
                ours.append(event)
                if event["kind"] == "StreamDeleted":
                    break
    finally:
        command.send_signal(signal.SIGINT)
        try:
            assert command.wait(timeout=COMMAND_TIMEOUT) == 130
        finally:
            end_command(command)
    assert [event["kind"] for event in ours] == ["StreamCreated", "StreamDeleted"]
    assert ours[0]["offset"] < ours[1]["offset"]


HELP_PATHS = [
    (),
    ("dev",),
    ("stream",),
    ("stream", "create"),
    ("stream", "delete"),
    ("stream", "pause"),
    ("stream", "readonly"),
    ("stream", "list"),
    ("metadata",),
    ("pub",),
    ("sub",),
    ("cursor",),
    ("cursor", "get"),
    ("cursor", "set"),
    ("group",),
    ("group", "consume"),
    ("group", "describe"),
    ("activity",),
]


@pytest.mark.parametrize("path", HELP_PATHS, ids=lambda p: " ".join(p) or "lbwire")
def test_help_everywhere_with_examples(path, capsys):
    from lbwire.cli import main

    with pytest.raises(SystemExit) as exit:
        main([*path, "--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    if path and path not in {("stream",), ("cursor",), ("group",), ("dev",)}:
        assert "--brokers" in out
