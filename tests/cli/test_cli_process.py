"""The `lbwire` command as a process: Ctrl-C, SIGTERM, a closed pipe, `lbwire dev`.

These run on every interpreter (PyPy's pass too): signals reach Python code at
points that differ between interpreters, and a KeyboardInterrupt raised at an
unlucky one once hung `lbwire dev` on PyPy only. What the commands print and
how they parse their arguments is the same everywhere: the other CLI modules
are `one_interpreter`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest
from cli_support import COMMAND_TIMEOUT, command_mark, end_command
from helpers.processes import marked_pids


def test_dev_runs_a_server_until_sigterm(lbwire_popen):
    process = lbwire_popen("dev", "--port", "0")
    assert process.stdout is not None
    ready = process.stdout.readline().decode()
    export = process.stdout.readline().decode()
    assert ready.startswith("Liftbridge 127.0.0.1:"), ready
    assert export.startswith("export LBWIRE_BROKERS=127.0.0.1:")
    broker = export.strip().split("=", 1)[1]
    # `lbwire dev` creates the stream "demo", so `lbwire pub demo` works at once.
    publish = lbwire_popen("pub", "demo", "hi", brokers=broker)
    _, err = publish.communicate(timeout=60)
    assert publish.returncode == 0, err

    check = lbwire_popen("metadata", "--format", "json", brokers=broker)
    out, _ = check.communicate(timeout=60)
    assert check.returncode == 0
    assert json.loads(out)["brokers"][0]["port"] == int(broker.rsplit(":", 1)[1])

    mark = command_mark(process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert b"Traceback" not in err
    # `lbwire dev` waits for its server before it exits. (Checking that the
    # port refuses connections would race with other workers' servers.)
    assert marked_pids(mark) == []


def test_a_hung_command_is_ended_with_its_server(lbwire_popen):
    # What a test's teardown does to a command still running (one that hung):
    # `lbwire dev`'s server runs in a session of its own, and goes too.
    process = lbwire_popen("dev", "--port", "0", "--streams", "")
    assert process.stdout is not None
    ready = process.stdout.readline().decode()
    assert ready.startswith("Liftbridge 127.0.0.1:"), ready
    mark = command_mark(process)
    assert len(marked_pids(mark)) == 2  # the command and its server
    end_command(process)
    assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL was sent; nothing announces the death
    # Gone, by process: a check that the port refuses connections would race
    # with the other test workers, whose servers may take the freed port.
    assert marked_pids(mark) == []


def test_dev_stops_on_ctrl_c(lbwire_popen):
    process = lbwire_popen("dev", "--port", "0", "--streams", "")
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"Liftbridge 127.0.0.1:")
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"`lbwire dev` still ran 60 s after SIGINT; its stderr: {err!r}")
    assert process.returncode == 0, err
    assert b"Liftbridge stopped" in err


def test_dev_on_a_taken_port_says_so(lbwire_popen):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = lbwire_popen("dev", "--port", str(port))
        _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    text = err.decode()
    assert text.splitlines()[-1].startswith("lbwire: error: cannot start Liftbridge")
    assert "in use" in text
    assert "Traceback" not in text


def test_ctrl_c_commits_what_sub_printed_and_exits_130_quietly(lbwire, lbwire_popen, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, input="".join(f"{i}\n" for i in range(100)))
    process = lbwire_popen("sub", stream_name, "--cursor", "live", "--from", "earliest")
    assert process.stdout is not None
    # Wait for every stored message to be printed: the command then waits for new ones.
    printed = [process.stdout.readline() for _ in range(100)]
    assert printed[-1] == b"99\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err == b""
    assert lbwire("cursor", "get", stream_name, "live").stdout == b"100\n"


def test_sigterm_stops_sub_like_ctrl_c(lbwire, lbwire_popen, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, "only")
    process = lbwire_popen("sub", stream_name, "--from", "earliest")
    assert process.stdout is not None
    assert process.stdout.readline() == b"only\n"
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err == b""


def test_closed_stdout_pipe_exits_quietly(lbwire, lbwire_popen, stream_name):
    lbwire("stream", "create", stream_name)
    lbwire("pub", stream_name, input="".join(f"{i}\n" for i in range(20000)))
    process = lbwire_popen("sub", stream_name, "--from", "earliest")
    assert process.stdout is not None
    assert process.stdout.readline() == b"0\n"
    process.stdout.close()  # as `| head -1` does
    _, err = process.communicate(timeout=30)
    assert process.returncode == 141
    assert err == b""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_pub_waiting_for_more_input_stops_on_a_signal(lbwire, lbwire_popen, stream_name, signum):
    lbwire("stream", "create", stream_name)
    process = lbwire_popen("pub", stream_name, stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(b"first\n")
    process.stdin.flush()
    # Returns once "first" is stored; stdin stays open, so pub waits for more.
    assert lbwire("sub", stream_name, "--from", "earliest", "--count", "1").stdout == b"first\n"
    process.send_signal(signum)
    # stdin stays open until the end: EOF would end pub normally.
    assert process.wait(timeout=30) == 130
    assert process.stderr is not None
    assert process.stderr.read() == b""
