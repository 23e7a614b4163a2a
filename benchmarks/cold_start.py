"""Where a cold start's time goes: each step of lbwire's first message, in fresh processes.

    python -m benchmarks.cold_start [--rounds 7] [--broker HOST:PORT] [--python PATH]

Starts a throwaway Liftbridge server (unless `--broker`), puts a message on a
stream, then runs `--rounds` fresh interpreters. Each one times, in order:

* `import lbwire.client` (what `import_ms` measures);
* the event loop's start (`anyio.run` loading its backend);
* the gRPC machinery lbwire.client defers until the first call
  (`lbwire.grpc` with its HTTP/2 core and HPACK);
* the first call (FetchMetadata), which opens the connection: TCP, the
  HTTP/2 preface and the server's SETTINGS, then the call;
* subscribing until the first message arrives;
* warm: the same call and the same subscription again in the same process
  (the first call minus the warm call is what opening the connection cost).

The steps are timed one after the other in one process, so their sum is the
cold start (import plus first message); `first_message_ms` in the benchmark
run times the steps from the event loop's start on, with the imports done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from typing import Dict, List, Optional

from .run import fresh_python

STREAM = "lbbench-cold-start"

#: The steps, in the order one process times them.
STEPS = (
    "import lbwire.client",
    "event loop start",
    "import gRPC machinery",
    "first call (connect + FetchMetadata)",
    "subscribe to first message",
    "warm: FetchMetadata again",
    "warm: subscribe to first message again",
)

# The program each fresh interpreter runs: prints one JSON object of step -> ms.
_CHILD = r"""
import json, sys, time
clock = time.perf_counter
marks = {}
t = clock()
import lbwire.client
marks["import lbwire.client"] = clock() - t
import anyio

async def main(broker, stream):
    marks["event loop start"] = clock() - started
    t = clock()
    import lbwire.grpc.channel
    marks["import gRPC machinery"] = clock() - t
    from lbwire.client import LiftbridgeClient, StartPosition
    async with LiftbridgeClient([broker]) as client:
        t = clock()
        await client.get_metadata()
        marks["first call (connect + FetchMetadata)"] = clock() - t
        for step in ("subscribe to first message", "warm: subscribe to first message again"):
            if step.startswith("warm"):
                t = clock()
                await client.get_metadata()
                marks["warm: FetchMetadata again"] = clock() - t
            t = clock()
            messages = client.subscribe(stream, start_position=StartPosition.EARLIEST)
            async for _ in messages:
                break
            marks[step] = clock() - t
            await messages.aclose()

started = clock()
anyio.run(main, sys.argv[1], sys.argv[2])
print(json.dumps({k: v * 1000.0 for k, v in marks.items()}))
"""


def run_rounds(python: str, broker: str, rounds: int) -> Dict[str, List[float]]:
    """Each step's milliseconds over `rounds` fresh interpreters (after one warm-up)."""
    samples: Dict[str, List[float]] = {step: [] for step in STEPS}
    for rnd in range(rounds + 1):  # round 0 writes the bytecode caches
        done = fresh_python(python, _CHILD, broker, STREAM, timeout=120)
        if done.returncode != 0:
            raise SystemExit(f"the measured process failed:\n{done.stderr[-2000:]}")
        if rnd == 0:
            continue
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        for step in STEPS:
            samples[step].append(marks[step])
    return samples


def report(samples: Dict[str, List[float]], python: str) -> str:
    lines = [f"Cold start, {python} (median of {len(samples[STEPS[0]])} fresh processes):"]
    cold = 0.0
    for step in STEPS:
        median = statistics.median(samples[step])
        if not step.startswith("warm"):
            cold += median
        lines.append(f"  {step:<40} {median:7.2f} ms  (min {min(samples[step]):.2f})")
    lines.append(f"  {'cold start: the sum of the steps above':<40} {cold:7.2f} ms")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--broker", help="use this Liftbridge server instead of a throwaway one")
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure")
    args = parser.parse_args(argv)

    import anyio

    from lbwire.client import LiftbridgeClient
    from lbwire.error import ErrorAlreadyExists
    from lbwire.testing import LiftbridgeServer

    async def prepare(broker: str) -> None:
        async with LiftbridgeClient([broker]) as client:
            with contextlib.suppress(ErrorAlreadyExists):
                await client.create_stream(STREAM, wait_for_stream=True)
            await client.publish(b"x" * 100, stream=STREAM)

    server = None if args.broker else LiftbridgeServer()
    try:
        if server is not None:
            server.start()
        broker = args.broker or server.broker  # type: ignore[union-attr]
        anyio.run(prepare, broker)
        started = time.perf_counter()
        samples = run_rounds(args.python, broker, args.rounds)
        print(report(samples, args.python))
        print(f"({time.perf_counter() - started:.1f} s)")
    finally:
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
