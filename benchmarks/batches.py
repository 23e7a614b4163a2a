"""What batches save: one message at a time against `batched()`, in one process.

    python -m benchmarks.batches [--quick] [--rounds N] [--out DIR]

Two measurements, of lbwire on asyncio, each alternating the two ways of
reading round by round in one process (so that the machine's drift, which
moves this VM's CPU time per message by a third from minute to minute, hits
both alike), as CPU time of the process per message:

* ``in_memory``: a subscription whose messages are already decoded, in the
  lists a Subscribe call hands over (300 at a time), without a server: the
  client's Subscribe call is replaced through the seam the API tests use
  (`LiftbridgeClient._subscribe_once`). This is all that reading in batches
  can save: what lbwire spends handing each message to the caller's loop.
* ``server``: 100 B messages read from EARLIEST from a throwaway v1.9.0 (or
  ``--server newest``) on 127.0.0.1, as the scenarios ``subscribe_100B`` and
  ``subscribe_batches_100B`` read them, with the client's time split into
  receiving (HTTP/2 and gRPC framing), decoding, and the rest (the part
  batches can change) by timing the two functions that do the first two.

Batches are ``batched(subscription, 500, 0.05)``. Prints the medians and
the lowest rounds, and writes them to ``batches.json`` next to
``latest.json`` (a ``--quick`` run only with ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, DefaultDict, Dict, List

import anyio

from lbwire import LiftbridgeClient, StartPosition
from lbwire.reader import batched
from lbwire.types import Message

from .run import ROOT

MAX_COUNT, MAX_WAIT = 500, 0.05
#: Messages per list in memory: about what a Subscribe call hands over at once
#: while the client keeps up (measured: 236 to 385 on this machine).
LIST = 300

Reader = Callable[[LiftbridgeClient, str, int], Awaitable[None]]


async def one_at_a_time(client: LiftbridgeClient, stream: str, count: int) -> None:
    n = 0
    subscription = client.subscribe(stream, start_position=StartPosition.EARLIEST)
    try:
        async for _ in subscription:
            n += 1
            if n >= count:
                break
    finally:
        await subscription.aclose()  # type: ignore[attr-defined]


async def in_batches(client: LiftbridgeClient, stream: str, count: int) -> None:
    n = 0
    subscription = client.subscribe(stream, start_position=StartPosition.EARLIEST)
    async with batched(subscription, MAX_COUNT, MAX_WAIT) as batches:
        async for batch in batches:
            n += len(batch)
            if n >= count:
                break


READERS: Dict[str, Reader] = {"one_at_a_time": one_at_a_time, "batches": in_batches}


async def alternate(
    client: LiftbridgeClient, stream: str, count: int, rounds: int, parts: DefaultDict[str, float]
) -> Dict[str, List[Dict[str, float]]]:
    """Each reader `rounds` times, alternating (and swapping who goes first)."""
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in READERS}
    for round_ in range(rounds):
        order = list(READERS) if round_ % 2 == 0 else list(reversed(READERS))
        for name in order:
            parts.clear()
            start = time.process_time()
            await READERS[name](client, stream, count)
            cpu = time.process_time() - start
            sample = {"cpu_us_per_msg": cpu / count * 1e6}
            for part, seconds in parts.items():
                sample[f"{part}_us_per_msg"] = seconds / count * 1e6
            if parts:
                sample["rest_us_per_msg"] = (cpu - sum(parts.values())) / count * 1e6
            samples[name].append(sample)
    return samples


def in_memory(count: int, rounds: int) -> Dict[str, List[Dict[str, float]]]:
    """The in-memory measurement (see the module docstring)."""
    messages = [Message(b"x" * 100, "s", i, 0, b"", 0, {}, "s") for i in range(LIST)]

    async def call(*_: Any, **__: Any) -> AsyncIterator[List[Message]]:
        while True:
            yield list(messages)
            await anyio.lowlevel.checkpoint()

    async def main() -> Dict[str, List[Dict[str, float]]]:
        client = LiftbridgeClient(["127.0.0.1:9"])  # never connected
        return await alternate(client, "s", count, rounds, defaultdict(float))

    seam = LiftbridgeClient._subscribe_once  # noqa: SLF001
    LiftbridgeClient._subscribe_once = call  # type: ignore[method-assign]  # noqa: SLF001
    try:
        return anyio.run(main)
    finally:
        LiftbridgeClient._subscribe_once = seam  # type: ignore[method-assign]  # noqa: SLF001


def against_server(count: int, rounds: int, server: str) -> Dict[str, List[Dict[str, float]]]:
    """The measurement against a throwaway server (see the module docstring)."""
    import lbwire._subscribe as subscribe_module
    from lbwire.grpc import _connection as connection_module
    from lbwire.testing import LiftbridgeServer, find_liftbridge

    parts: DefaultDict[str, float] = defaultdict(float)
    # CPU time of this thread (the loop's), not wall time: a preempted
    # process would count its waits.
    clock = time.thread_time
    decode = getattr(subscribe_module, "decode_streamed")  # noqa: B009  # patched below
    received = connection_module.Connection.data_received

    def timed_decode(*args: Any) -> Any:
        start = clock()
        try:
            return decode(*args)
        finally:
            parts["decode"] += clock() - start

    def timed_receive(self: Any, data: bytes) -> None:
        start = clock()
        try:
            received(self, data)
        finally:
            parts["receive"] += clock() - start

    async def main() -> Dict[str, List[Dict[str, float]]]:
        binary = find_liftbridge(version=server)
        with LiftbridgeServer(binary=binary, version=server) as broker:
            async with LiftbridgeClient([broker.broker]) as client:
                await client.create_stream("batches", wait_for_stream=True)
                for _ in range(0, count, 1000):
                    await client.publish_batch([b"x" * 100] * 1000, stream="batches")
                setattr(subscribe_module, "decode_streamed", timed_decode)  # noqa: B010
                connection_module.Connection.data_received = timed_receive  # type: ignore[method-assign]
                try:
                    return await alternate(client, "batches", count, rounds, parts)
                finally:
                    setattr(subscribe_module, "decode_streamed", decode)  # noqa: B010
                    connection_module.Connection.data_received = received  # type: ignore[method-assign]

    return anyio.run(main)


def summarize(samples: Dict[str, List[Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """Per reader and measure: the median and the lowest of the rounds."""
    out: Dict[str, Dict[str, float]] = {}
    for name, rounds in samples.items():
        for key in rounds[0]:
            values = [sample[key] for sample in rounds]
            out.setdefault(name, {})[key] = round(statistics.median(values), 3)
            out[name][f"{key}_lowest"] = round(min(values), 3)
    return out


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few messages")
    parser.add_argument("--rounds", type=int, default=None, help="per reader (default 10, quick 2)")
    parser.add_argument("--server", choices=["v1.9.0", "newest"], default="v1.9.0")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results (not for --quick)"
    )
    args = parser.parse_args(argv)
    count = 5_000 if args.quick else 200_000
    rounds = args.rounds or (2 if args.quick else 10)
    result: Dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": sys.version.split()[0],
        "server": args.server,
        "messages_per_round": count,
        "rounds": rounds,
        "batch": {"max_count": MAX_COUNT, "max_wait": MAX_WAIT},
    }
    result["in_memory"] = summarize(in_memory(count, rounds))
    print("in_memory", json.dumps(result["in_memory"], indent=1), flush=True)
    result["server"] = summarize(against_server(count, rounds, args.server))
    print("server", json.dumps(result["server"], indent=1), flush=True)
    out = args.out if args.out is not None or args.quick else ROOT / "benchmarks" / "results"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "batches.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out / 'batches.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
