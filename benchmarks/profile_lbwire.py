"""Where lbwire's time goes, per message or call: cProfile grouped by layer.

    python -m benchmarks.profile_lbwire subscribe [--size 1024] [--count N] [--backend trio]
    python -m benchmarks.profile_lbwire unacked|acked|pipelined|cursor [--count N]

Starts a throwaway Liftbridge server, runs the scenario once without the
profiler (the real rate) and once under cProfile, and prints the profiled
run's self time per operation grouped by layer (h2, lbwire.grpc, lbwire.wire,
the client, anyio, the event loop, socket system calls), the system calls per
operation and the top functions. cProfile slows Python code down (about 2x)
but not system calls, so read the shares and counts, not absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
import time
from collections import deque
from typing import Any, Deque, Dict, List, Tuple

LAYERS: List[Tuple[str, str]] = [
    (r"/(h2|hpack|hyperframe)/", "h2 / hpack / hyperframe"),
    (
        r"lbwire/grpc/(protocol|_inbound|_stream|_hpack|_frames|metadata|events)\.py",
        "lbwire.grpc sans-IO core",
    ),
    (r"lbwire/grpc/", "lbwire.grpc connection, calls, backends"),
    (r"lbwire/wire/", "lbwire.wire (encode/decode)"),
    (r"lbwire/", "lbwire client layer"),
    (r"/anyio/", "anyio"),
    (r"/(asyncio|trio|uvloop|outcome|sniffio)/|selectors\.py|socket\.py", "event loop"),
    (r"benchmarks/", "benchmark loop"),
]
SYSCALLS = {
    "send": "socket send",
    "recv": "socket recv",
    "poll": "epoll (asyncio)",
    "epoll_wait": "epoll (asyncio)",
    "select": "select",
}


def layer_of(filename: str, function: str) -> str:
    if filename == "~":  # a builtin: name it by what it is
        match = re.search(r"method '(\w+)' of '(?:_socket\.socket|select\.epoll)'", function)
        if match and match.group(1) in SYSCALLS:
            return "system calls: " + SYSCALLS[match.group(1)]
        return "builtins"
    for pattern, name in LAYERS:
        if re.search(pattern, filename):
            return name
    return "other"


async def scenario(args: argparse.Namespace, broker: str, profiler: Any) -> float:
    """Run the scenario; return seconds. `profiler` (or None) covers the timed part."""
    from lbwire.client import AckPolicy, LiftbridgeClient, StartPosition

    value = bytes(args.size)
    async with LiftbridgeClient([broker]) as client:
        await client.get_metadata()
        if args.what != "subscribe":  # warm the connection and the metadata cache
            await client.publish(value, stream="profile-publish", ack_policy=AckPolicy.NONE)
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        if args.what == "subscribe":
            received = 0
            messages = client.subscribe(args.stream, start_position=StartPosition.EARLIEST)
            async for _ in messages:
                received += 1
                if received >= args.count:
                    break
            await messages.aclose()
        elif args.what in ("unacked", "acked"):
            policy = AckPolicy.NONE if args.what == "unacked" else AckPolicy.LEADER
            for _ in range(args.count):
                await client.publish(value, stream="profile-publish", ack_policy=policy)
        elif args.what == "pipelined":
            pending: Deque[Any] = deque()
            for _ in range(args.count):
                if len(pending) >= 1000:
                    await pending.popleft()
                pending.append(await client.publish_async(value, stream="profile-publish"))
            while pending:
                await pending.popleft()
        else:  # cursor
            for i in range(args.count):
                await client.set_cursor("profile-publish", 0, "profile", i)
                await client.get_cursor("profile-publish", 0, "profile")
        if profiler is not None:
            profiler.disable()
        return time.perf_counter() - start


async def prepare(args: argparse.Namespace, server: Any) -> None:
    from lbwire.client import LiftbridgeClient

    from .seed import ensure_stream, fill

    async with LiftbridgeClient([server.broker]) as client:
        await ensure_stream(client, "profile-publish")
        if args.what == "subscribe":
            nats = (server.host, server.nats_port)
            await fill(client, args.stream, args.count, args.size, nats, print)
        if args.what == "cursor":
            await client.wait_for_cursors(timeout=60)


def report(stats: pstats.Stats, ops: int, top: int) -> None:
    by_layer: Dict[str, float] = {}
    calls: Dict[str, int] = {}
    rows = []
    raw: Dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, function), (_, ncalls, tottime, _, _) in raw.items():
        layer = layer_of(filename, function)
        by_layer[layer] = by_layer.get(layer, 0.0) + tottime
        if layer.startswith("system calls"):
            calls[layer] = calls.get(layer, 0) + ncalls
        rows.append((tottime, ncalls, f"{filename.split('site-packages/')[-1]}:{line}({function})"))
    total = sum(by_layer.values())
    print(f"\nSelf time per operation under cProfile (total {total / ops * 1e6:.1f} us/op):")
    for layer, seconds in sorted(by_layer.items(), key=lambda item: -item[1]):
        extra = ""
        if layer in calls:
            extra = (
                f"  ({calls[layer] / ops:.3f} calls/op, {seconds / calls[layer] * 1e6:.1f} us each)"
            )
        print(f"  {seconds / total * 100:5.1f}%  {seconds / ops * 1e6:8.2f} us  {layer}{extra}")
    print(f"\nTop {top} functions by self time (us/op, calls/op):")
    for tottime, ncalls, name in sorted(rows, reverse=True)[:top]:
        print(f"  {tottime / ops * 1e6:8.2f}  {ncalls / ops:7.2f}  {name}")


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_lbwire", description=__doc__
    )
    parser.add_argument("what", choices=["subscribe", "unacked", "acked", "pipelined", "cursor"])
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--count", type=int, help="messages or calls (default by scenario)")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    defaults = {"subscribe": 200_000, "pipelined": 10_000, "cursor": 500}
    args.count = args.count or defaults.get(args.what, 2_000)
    args.stream = f"profile-{args.size}B"

    import anyio

    from lbwire.testing import LiftbridgeServer

    backend, options = args.backend, {}
    if backend == "uvloop":
        import uvloop

        backend, options = "asyncio", {"loop_factory": uvloop.new_event_loop}
    with LiftbridgeServer() as server:
        anyio.run(prepare, args, server)
        plain = anyio.run(
            scenario, args, server.broker, None, backend=backend, backend_options=options
        )
        profiler = cProfile.Profile()
        profiled = anyio.run(
            scenario, args, server.broker, profiler, backend=backend, backend_options=options
        )
    unit = "msgs" if args.what in ("subscribe", "pipelined") else "calls"
    if args.what == "cursor":
        unit = "set+get pairs"
    print(
        f"\n{args.what} on {args.backend}, {args.count:,} {unit} of {args.size} B: "
        f"{args.count / plain:,.0f}/s ({plain / args.count * 1e6:.1f} us/op) without the profiler, "
        f"{profiled / args.count * 1e6:.1f} us/op under it"
    )
    report(pstats.Stats(profiler), args.count, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
