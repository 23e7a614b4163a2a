"""Python bytecodes per publish, by function: a count that does not drift with the machine.

    python -m benchmarks.publish_ops [--quick] [--count N] [--way WAY] [--top N]

Against a throwaway Liftbridge v1.9.0 on 127.0.0.1, publishes `count`
messages of 100 B one way (the loops of `benchmarks.publish_cpu`: pipelined
with 1,000 in flight, or fire-and-forget) under a tracer that counts every
bytecode the interpreter runs (`sys.settrace` with opcode events), and prints
one JSON line: the bytecodes per publish in all, and the functions that run
the most of them, per publish.

CPU time on a shared 2-core VM moves by a third from minute to minute; this
count moves by less than 1% from run to run (the event loop's passes, and so
the acks read per pass, vary a little), which is what comparing two versions
of the publishing path needs. It says nothing of the C code a bytecode runs
(decoding a string, a system call): `valgrind --tool=callgrind` counts that
(see ``benchmarks/README.md``). Traced, the client runs about 30 times
slower, so the ack timeout is raised to 120 s.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from types import CodeType, FrameType
from typing import Any, Callable, Counter, Dict, List, Optional

import anyio

from lbwire import LiftbridgeClient
from lbwire.testing import LiftbridgeServer

from .publish_cpu import STREAM, WAYS

_Tracer = Callable[[FrameType, str, Any], Optional[Callable[..., Any]]]


async def count_ops(count: int, way: str) -> Counter[CodeType]:
    """The bytecodes each function ran while `count` messages were published `way`."""
    counts: Counter[CodeType] = collections.Counter()

    def local(frame: FrameType, event: str, arg: Any) -> _Tracer:
        if event == "opcode":
            counts[frame.f_code] += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> _Tracer:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    publish = WAYS[way]
    with LiftbridgeServer() as server:
        async with LiftbridgeClient([server.broker], publish_async_ack_timeout=120) as client:
            await client.create_stream(STREAM, wait_for_stream=True)
            await publish(client, b"x" * 100, 500)  # warm-up: the stream is open
            sys.settrace(tracer)
            try:
                await publish(client, b"x" * 100, count)
            finally:
                sys.settrace(None)
    return counts


def report(counts: Counter[CodeType], count: int, top: int) -> Dict[str, Any]:
    """Bytecodes per publish, in all and for the `top` functions that run the most."""
    return {
        "bytecodes_per_publish": round(sum(counts.values()) / count, 1),
        "functions": {
            f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}:{code.co_name}": round(
                ops / count, 1
            )
            for code, ops in counts.most_common(top)
        },
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 publishes")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--way", choices=list(WAYS), default="pipelined")
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    args = parser.parse_args(argv)
    count = 200 if args.quick else args.count
    counts = anyio.run(count_ops, count, args.way)
    print(json.dumps(report(counts, count, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
