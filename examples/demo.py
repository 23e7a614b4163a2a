"""The lbwire demo: a subscriber killed part-way resumes exactly where it stopped.

It starts a throwaway Liftbridge server (built on first use), creates a
stream, publishes messages, runs `cursor_subscriber.py` as a separate
process, kills it (SIGKILL) part-way, starts it again and checks that the
second run begins at the first message the first run had not recorded in
its cursor, and that together the runs processed every message once.

    python examples/demo.py            # asyncio subscriber
    python examples/demo.py --trio     # trio subscriber
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeServer

HERE = Path(__file__).resolve().parent
STREAM = "demo"
CURSOR_ID = "demo-cursor"


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


async def prepare(broker: str) -> None:
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(STREAM, wait_for_stream=True)
        await client.wait_for_cursors()
        say(f"created stream {STREAM!r}")


async def publish(broker: str, first: int, last: int) -> None:
    async with LiftbridgeClient([broker]) as client:
        for i in range(first, last + 1):
            await client.publish(f"message {i}".encode(), stream=STREAM)
    say(f"published messages {first}-{last}")


async def stored_cursor(broker: str) -> int:
    async with LiftbridgeClient([broker]) as client:
        return await client.get_cursor(STREAM, 0, CURSOR_ID)


def start_subscriber(broker: str, use_trio: bool) -> subprocess.Popen[str]:
    script = HERE / ("cursor_subscriber_trio.py" if use_trio else "cursor_subscriber.py")
    env = dict(
        os.environ,
        LIFTBRIDGE_BROKERS=broker,
        LIFTBRIDGE_STREAM=STREAM,
        LIFTBRIDGE_CURSOR=CURSOR_ID,
        PYTHONUNBUFFERED="1",
    )
    return subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )


def read_offsets(proc: subprocess.Popen[str], until: int, timeout: float) -> List[int]:
    """Read the subscriber's '<offset>: <value>' lines until it printed `until`."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # A reader thread, so that waiting for a line can time out.
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    offsets: List[int] = []
    deadline = time.monotonic() + timeout
    while not offsets or offsets[-1] < until:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise SystemExit(
                f"[demo] FAILED: subscriber did not reach offset {until} in {timeout} s"
            ) from None
        print(f"    subscriber | {line.rstrip()}", flush=True)
        offsets.append(int(line.split(":", 1)[0]))
    return offsets


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trio", action="store_true", help="run the trio subscriber")
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--kill-after", type=int, default=4, help="offset after which to kill")
    args = parser.parse_args(argv)
    total, kill_after = args.messages, args.kill_after
    if not 0 <= kill_after < total - 1:
        parser.error("--kill-after must be at least 0 and below --messages - 1")

    say("starting a throwaway Liftbridge server on 127.0.0.1 (built on first use)")
    with LiftbridgeServer() as server:
        say(f"server ready at {server.broker} (log: {server.log_path})")
        asyncio.run(prepare(server.broker))
        # Run 1 gets only the first part, so that it cannot finish everything
        # before it is killed; the rest is published while it is down.
        asyncio.run(publish(server.broker, 0, kill_after))

        flavour = "trio" if args.trio else "asyncio"
        say(f"run 1: {flavour} subscriber from the stored cursor (none yet)")
        first = start_subscriber(server.broker, args.trio)
        seen1 = read_offsets(first, kill_after, timeout=60)
        first.kill()  # SIGKILL: no clean shutdown, like a crash
        first.wait()
        cursor = asyncio.run(stored_cursor(server.broker))
        say(
            f"killed run 1 after it printed offset {seen1[-1]}; cursor holds {cursor} "
            "(the next message to process)"
        )

        asyncio.run(publish(server.broker, kill_after + 1, total - 1))
        say("run 2: same program, same cursor")
        second = start_subscriber(server.broker, args.trio)
        seen2 = read_offsets(second, total - 1, timeout=60)
        second.kill()
        second.wait()

    resumed_at = seen2[0]
    processed = sorted(set(o for o in seen1 if o < cursor) | set(seen2))
    ok = resumed_at == cursor and processed == list(range(total)) and seen2 == sorted(seen2)
    if ok:
        say(
            f"run 2 resumed at offset {resumed_at}, exactly where run 1 stopped: "
            f"all {total} messages processed, none lost, none repeated after the cursor"
        )
        return 0
    say(f"FAILED: run 2 started at {resumed_at}, cursor was {cursor}; processed {processed}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
