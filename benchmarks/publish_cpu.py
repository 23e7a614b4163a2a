"""CPU time per publish of lbwire on asyncio: pipelined and fire-and-forget, in one process.

    python -m benchmarks.publish_cpu [--quick] [--rounds N] [--count N] [--way WAY]

Against a throwaway Liftbridge v1.9.0 on 127.0.0.1: each round publishes
`count` messages of 100 B with `publish_async` and 1,000 in flight (awaiting
the oldest ack when the window is full), then `count` with
`AckPolicy.NONE` (and one acked publish after them, so that the server has
read them). Prints one JSON line: per way, the median CPU time of this process
per publish (µs) and the median rate (publishes/s).

Meant for comparing two versions of lbwire: run it from each checkout in
turn (``PYTHONPATH=checkout``), several times, alternating, and compare the
medians; one run alone on a shared machine says little.

Where CPU time drifts too much for that, count instructions instead: run one
way (``--way``) under ``valgrind --tool=callgrind`` with two counts, one round
each, and divide the difference of the instructions by the difference of the
counts (start-up, warm-up and the server's set-up cancel out; the server is
a child process valgrind does not follow). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import anyio

from lbwire import LiftbridgeClient
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy

STREAM = "publish-cpu"
IN_FLIGHT = 1000


async def pipelined(client: LiftbridgeClient, value: bytes, count: int) -> None:
    pending: Deque[Any] = deque()
    for _ in range(count):
        if len(pending) >= IN_FLIGHT:
            await pending.popleft()
        pending.append(await client.publish_async(value, stream=STREAM))
    while pending:
        await pending.popleft()


async def fire_and_forget(client: LiftbridgeClient, value: bytes, count: int) -> None:
    for _ in range(count):
        await client.publish_async(value, stream=STREAM, ack_policy=AckPolicy.NONE)
    await client.publish(value, stream=STREAM)


WAYS = {"pipelined": pipelined, "fire_and_forget": fire_and_forget}


async def measure(
    count: int, rounds: int, only: Optional[str] = None
) -> Dict[str, Dict[str, float]]:
    ways = [(name, way) for name, way in WAYS.items() if only in (None, name)]
    samples: Dict[str, List[Tuple[float, float]]] = {}
    with LiftbridgeServer() as server:
        async with LiftbridgeClient([server.broker]) as client:
            await client.create_stream(STREAM, wait_for_stream=True)
            value = b"x" * 100
            await pipelined(client, value, min(count, 2000))  # warm-up
            for _ in range(rounds):
                for name, way in ways:
                    cpu, wall = time.process_time(), time.perf_counter()
                    await way(client, value, count)
                    samples.setdefault(name, []).append(
                        (
                            (time.process_time() - cpu) / count * 1e6,
                            count / (time.perf_counter() - wall),
                        )
                    )
    return {
        name: {
            "cpu_us_per_publish": round(statistics.median(c for c, _ in values), 2),
            "publishes_per_s": round(statistics.median(r for _, r in values)),
        }
        for name, values in samples.items()
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 500 publishes, 1 round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--way", choices=list(WAYS), default=None, help="only this way")
    args = parser.parse_args(argv)
    count, rounds = (500, 1) if args.quick else (args.count, args.rounds)
    print(json.dumps(anyio.run(measure, count, rounds, args.way)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
