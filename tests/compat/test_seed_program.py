"""The seed program: gufo-liftbridge's documented cursor subscriber, run on lbwire.

The program text below is gufo-liftbridge's own example, verbatim. The tests
change only its import line (and, for trio, the two lines that name the event
loop), run it as a separate process against a real server on the address it
hard-codes (127.0.0.1:9292), kill it with SIGKILL part-way and start it again:
the second run must begin at the first message the cursor does not record as
processed, and the two runs together must have processed every message, the
only possible repeat being the message whose cursor write the kill interrupted.

Also here: `examples/demo.py`, the same scenario packaged as a demo, run end
to end.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator, List

import anyio
import pytest
from compat_support import (
    ProgramRun,
    changed_lines,
    child_env,
    cursor_history,
    offset_at_least,
    parse_offset_line,
    prepare_stream,
    publish_more,
    read_cursor,
)
from helpers.servers import port_taken_by_us

from lbwire.testing import LiftbridgeServer, LiftbridgeStartError

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]

#: gufo-liftbridge's documented example, exactly as published.
SEED_PROGRAM = """\
import asyncio
from gufo.liftbridge.client import LiftbridgeClient, StartPosition

BROKERS = ["127.0.0.1:9292"]
CURSOR_ID = "test_cursor"

async def subscribe():
    async with LiftbridgeClient(BROKERS) as client:
        async for msg in client.subscribe(
            "test",
            partition=0,
            start_position=StartPosition.RESUME,
            cursor_id=CURSOR_ID,
        ):
            print(f"{msg.offset}: {msg.value}")
            await client.set_cursor(
                "test", partition=0, cursor_id=CURSOR_ID, offset=msg.offset
            )

asyncio.run(subscribe())
"""

GUFO_IMPORT = "from gufo.liftbridge.client import LiftbridgeClient, StartPosition"
LBWIRE_IMPORT = "from lbwire.client import LiftbridgeClient, StartPosition"

#: The edits that make each variant, as (original line, replacement) pairs.
EDITS = {
    "asyncio": [(GUFO_IMPORT, LBWIRE_IMPORT)],
    "trio": [
        ("import asyncio", "import trio"),
        (GUFO_IMPORT, LBWIRE_IMPORT),
        ("asyncio.run(subscribe())", "trio.run(subscribe)"),
    ],
}

PORT = 9292
STREAM = "test"
CURSOR_ID = "test_cursor"
FIRST_BATCH = 12  # published before run 1
KILL_AT = 5  # run 1 is killed once it printed this offset
SECOND_BATCH = 6  # published while no subscriber runs
THIRD_BATCH = 6  # published while run 2 runs


def value_of(offset: int) -> bytes:
    return f"message {offset}".encode()


def expected_line(offset: int) -> str:
    return f"{offset}: {value_of(offset)!r}"  # the program prints msg.value's repr


def program_text(variant: str) -> str:
    text = SEED_PROGRAM
    for old, new in EDITS[variant]:
        assert text.count(old + "\n") == 1
        text = text.replace(old + "\n", new + "\n")
    return text


@pytest.mark.parametrize("variant", ["asyncio", "trio"])
def test_only_the_expected_lines_differ(variant: str) -> None:
    assert changed_lines(SEED_PROGRAM, program_text(variant)) == EDITS[variant]


@pytest.fixture
def server_on_9292() -> Iterator[LiftbridgeServer]:
    """A fresh server on 127.0.0.1:9292, the address the seed program hard-codes."""
    with contextlib.ExitStack() as stack:
        # Other runs of this test (other passes, workers) wait for the port.
        stack.enter_context(port_taken_by_us(PORT))
        problem = None
        try:
            server = stack.enter_context(LiftbridgeServer(port=PORT))
        except LiftbridgeStartError as exc:
            problem = str(exc)
        if problem is not None:
            pytest.fail(
                f"The seed program hard-codes 127.0.0.1:{PORT}, so this test needs that "
                f"port, and a Liftbridge server could not be started on it. Is another "
                f"Liftbridge (or another test run) using it?\n{problem}",
                pytrace=False,
            )
        yield server


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_server_port_must_be_a_port(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        LiftbridgeServer(port=port)


def _offsets(lines: List[str]) -> List[int]:
    return [parse_offset_line(line)[0] for line in lines]


@pytest.mark.parametrize("variant", ["asyncio", "trio"])
def test_seed_program_resumes_after_sigkill(
    variant: str, server_on_9292: LiftbridgeServer, tmp_path: Path
) -> None:
    server = server_on_9292
    assert server.broker == f"127.0.0.1:{PORT}"
    script = tmp_path / f"seed_{variant}.py"
    script.write_text(program_text(variant))
    env = child_env()
    # The test's own client calls run on the same event loop flavour.
    run = lambda fn, *args: anyio.run(fn, *args, backend=variant)  # noqa: E731

    run(prepare_stream, server.broker, STREAM, [value_of(i) for i in range(FIRST_BATCH)])

    # Run 1: no cursor yet, so it starts at offset 0. Kill it mid-stream.
    with ProgramRun(script, env=env, label=f"run 1 ({variant})") as first:
        first.read_until(offset_at_least(KILL_AT))
        first.kill()
    run1 = first.lines
    assert run1 == [expected_line(i) for i in range(len(run1))], first.describe()
    last = len(run1) - 1
    assert last >= KILL_AT

    cursor = run(read_cursor, server.broker, STREAM, CURSOR_ID)
    # The program prints a message, then stores the cursor past it; the kill
    # may land before that write finished, so the last printed message may
    # still be unprocessed according to the cursor, never an earlier one.
    assert cursor in (last, last + 1), f"cursor {cursor} after run 1 printed 0..{last}"

    total = FIRST_BATCH + SECOND_BATCH + THIRD_BATCH
    run(
        publish_more,
        server.broker,
        STREAM,
        [value_of(i) for i in range(FIRST_BATCH, FIRST_BATCH + SECOND_BATCH)],
    )

    # Run 2: the very same program resumes from the cursor.
    with ProgramRun(script, env=env, label=f"run 2 ({variant})") as second:
        second.read_until(offset_at_least(FIRST_BATCH + SECOND_BATCH - 1))
        run(
            publish_more,
            server.broker,
            STREAM,
            [value_of(i) for i in range(FIRST_BATCH + SECOND_BATCH, total)],
        )
        second.read_until(offset_at_least(total - 1))
        second.kill()
    run2 = second.lines
    assert _offsets(run2)[0] == cursor, (
        f"run 2 started at offset {_offsets(run2)[0]}, the cursor said {cursor}; "
        + second.describe()
    )
    assert run2 == [expected_line(i) for i in range(cursor, total)], second.describe()

    # Nothing lost, nothing processed twice: the messages the cursor counts as
    # processed by run 1, then everything run 2 printed, are 0..total-1 once.
    processed = [o for o in _offsets(run1) if o < cursor] + _offsets(run2)
    assert processed == list(range(total))
    repeated = sorted(set(_offsets(run1)) & set(_offsets(run2)))
    assert repeated in ([], [last]), f"repeated offsets {repeated}"
    assert (repeated == [last]) == (cursor == last)

    # The server's own record of every cursor write (the `__cursors` log):
    # 1, 2, ... without gaps and never going back. The one value that may be
    # there twice is the interrupted write of run 1: the server can append it
    # to the log after the client died, yet without updating the cache that
    # FetchCursor answers from (cursors.go: the cache is updated only when the
    # publish is acked), so run 2 rightly processed that message again and
    # stored the same value once more.
    history = run(cursor_history, server.broker, STREAM, CURSOR_ID)
    assert history[:cursor] == list(range(1, cursor + 1)), history
    assert history == sorted(history), history
    assert sorted(set(history)) == list(range(1, history[-1] + 1)), history
    repeats = sorted({v for v in history if history.count(v) > 1})
    assert repeats in ([], [last + 1]), history
    assert not repeats or (cursor == last and history.count(last + 1) == 2), history
    assert history[-1] in (total - 1, total)


@pytest.mark.parametrize("flavour", ["asyncio", "trio"])
def test_demo_runs_end_to_end(flavour: str, tmp_path: Path) -> None:
    demo = REPO / "examples" / "demo.py"
    args = ["--trio"] if flavour == "trio" else []
    # Its own process group: if it hangs, SIGINT reaches it and the subscriber
    # it runs, and it stops its Liftbridge server on the way out.
    with ProgramRun(
        demo, env=child_env(), args=args, cwd=tmp_path, label="demo.py", own_group=True
    ) as proc:
        code = proc.wait(timeout=60)
        output = "\n".join(proc.lines)
        assert code == 0, proc.describe()
    success = [line for line in proc.lines if "exactly where run 1 stopped" in line]
    assert len(success) == 1, output
    assert re.search(r"all \d+ messages processed, none lost", success[0]), output
    assert not any("FAILED" in line for line in proc.lines), output
