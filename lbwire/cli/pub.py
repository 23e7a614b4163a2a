"""`lbwire pub`: publish the values given, or one message per line of stdin."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import threading
import time
from collections import deque
from typing import Any, AsyncIterator, Deque, Dict, List

from .common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CommandError,
    add_command,
    leaf,
    make_client,
    run_async,
)

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add `pub` to the `lbwire` parser."""
    pub = add_command(
        commands,
        "pub",
        help="publish messages: the VALUEs given, else one per line of stdin",
        epilog="""\
examples:
  lbwire pub demo hello world              # two messages
  seq 1 100000 | lbwire pub demo           # one message per line, pipelined
  lbwire pub new-stream --create hello     # create the stream if it is missing
  lbwire pub orders --key customer-7 --header source=shop '{"total": 12}'
  tail -F app.log | lbwire pub logs --ack none

Without --partition, messages go to partition 0, or with --key to the
partition the key hashes to (CRC-32, as go-liftbridge does).
""",
    )
    pub.add_argument("stream", help="stream name")
    pub.add_argument("values", nargs="*", metavar="VALUE", help="message values (default: stdin)")
    pub.add_argument("--key", help="message key (UTF-8)")
    pub.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="message header (repeatable)",
    )
    pub.add_argument("--partition", type=int, help="partition to publish to")
    pub.add_argument(
        "--create", action="store_true", help="create the stream first if it does not exist"
    )
    pub.add_argument(
        "--ack",
        choices=["none", "leader", "all"],
        default="leader",
        help="wait for no ack, the leader's (default), or every in-sync replica's",
    )
    pub.add_argument(
        "--in-flight",
        type=int,
        default=1024,
        metavar="N",
        help="most messages sent but not yet acknowledged (default: 1024)",
    )
    pub.add_argument(
        "--progress",
        action="store_true",
        help="show the live rate line even when stderr is not a terminal",
    )
    pub.add_argument("-q", "--quiet", action="store_true", help="no progress or count line")
    pub.set_defaults(run=run_async(_pub), spill_into="values")


def _headers(pairs: List[str]) -> Dict[str, bytes]:
    headers: Dict[str, bytes] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--header wants NAME=VALUE, not {pair!r}", EXIT_USAGE)
        headers[name] = value.encode()
    return headers


def _read_stdin(chunks: queue.Queue[bytes]) -> None:
    """Move stdin to `chunks` in a daemon thread, ending with b"" at EOF."""
    try:
        fd = sys.stdin.fileno()
        while True:
            # os.read returns what is there, so lines typed or piped slowly go
            # out at once; and it holds no lock of sys.stdin's, which the
            # interpreter's shutdown would otherwise wait for in vain.
            chunk = os.read(fd, 1 << 16)
            chunks.put(chunk)
            if not chunk:
                return
    except (OSError, ValueError):
        chunks.put(b"")


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Lines of stdin without their line ends.

    A daemon thread reads stdin: a read that waits for input which never
    comes must not keep Ctrl-C or SIGTERM from ending the process, and an
    event-loop worker thread blocked in it would be waited for at exit.
    """
    import anyio.to_thread

    chunks: queue.Queue[bytes] = queue.Queue(maxsize=4)
    threading.Thread(target=_read_stdin, args=(chunks,), name="lbwire-stdin", daemon=True).start()
    rest = b""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(chunks.get, abandon_on_cancel=True)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield line[:-1] if line.endswith(b"\r") else line
    finally:
        # Wakes an abandoned `chunks.get` so its worker thread can end.
        with contextlib.suppress(queue.Full):
            chunks.put_nowait(b"")
    if rest:
        yield rest


async def _arg_values(values: List[str]) -> AsyncIterator[bytes]:
    for value in values:
        yield value.encode()


class _Progress:
    """The live rate line on stderr, and the final count."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.tty = sys.stderr.isatty()
        self.count = 0
        self.started = time.monotonic()
        self.shown = False

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        noun = "message" if self.count == 1 else "messages"
        return f"{self.count:,} {noun} in {elapsed:.1f} s ({self.count / elapsed:,.0f} msg/s)"

    async def show(self) -> None:
        """Redraw the line until cancelled; inputs that end quickly never show it."""
        import anyio

        await anyio.sleep(0.5)
        while True:
            if self.tty:
                sys.stderr.write(f"\r{self._rate()}\x1b[K")
            else:
                sys.stderr.write(f"{self._rate()}\n")
            sys.stderr.flush()
            self.shown = True
            await anyio.sleep(0.2 if self.tty else 1.0)

    def finish(self, stream: str) -> None:
        if self.shown and self.tty:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.write(f"lbwire: published {self._rate()} to {stream!r}\n")
        sys.stderr.flush()


async def _pub(args: argparse.Namespace) -> int:
    import anyio

    from ..error import ErrorAlreadyExists, ErrorNotFound, ErrorReadonly
    from ..partitioning import KeyPartitioner
    from ..types import AckPolicy

    if args.in_flight < 1:
        raise CommandError("--in-flight must be at least 1", EXIT_USAGE)
    headers = _headers(args.header) or None
    ack_policy = {"none": AckPolicy.NONE, "leader": AckPolicy.LEADER, "all": AckPolicy.ALL}[
        args.ack
    ]
    key = args.key.encode() if args.key is not None else None
    partitioner = KeyPartitioner() if key and args.partition is None else None
    values = _arg_values(args.values) if args.values else _stdin_lines()
    progress = _Progress(live=not args.quiet and (args.progress or sys.stderr.isatty()))
    # Acks are awaited in publishing order in this task: handing each one to
    # another task would wake the event loop per message, and each wake-up
    # would send one message alone instead of a batch.
    pending: Deque[Any] = deque()

    try:
        async with make_client(args) as client, anyio.create_task_group() as display:
            # Checked first: the error comes before stdin is read, and an
            # unreachable cluster is reported as such (a PublishAsync stream
            # that fails to open says less).
            metadata = await client.get_metadata(args.stream)
            if not any(s.name == args.stream and s.partitions for s in metadata.metadata):
                if not args.create:
                    raise ErrorNotFound(args.stream)
                with contextlib.suppress(ErrorAlreadyExists):  # created meanwhile: fine
                    await client.create_stream(args.stream, wait_for_stream=True)
            if progress.live:
                display.start_soon(progress.show)
            async for value in values:
                if len(pending) >= args.in_flight:
                    await pending.popleft()
                    progress.count += 1
                pending.append(
                    await client.publish_async(
                        value,
                        stream=args.stream,
                        key=key,
                        partition=args.partition,
                        headers=headers,
                        ack_policy=ack_policy,
                        partitioner=partitioner,
                    )
                )
                while pending[0].done:
                    await pending.popleft()  # done: returns the ack or raises at once
                    progress.count += 1
                    if not pending:
                        break
            while pending:
                await pending.popleft()
                progress.count += 1
            display.cancel_scope.cancel()
    except Exception as exc:
        cause = leaf(exc)
        if isinstance(cause, ErrorNotFound):
            raise CommandError(
                f"stream {args.stream!r} (or its partition) does not exist; "
                f"--create or `lbwire stream create {args.stream}` creates it",
                EXIT_NOT_FOUND,
            ) from None
        if isinstance(cause, ErrorReadonly):
            raise CommandError(
                f"stream {args.stream!r} is read-only ({cause}); "
                f"`lbwire stream readonly {args.stream} --off` makes it writable"
            ) from None
        raise
    if not args.quiet:
        progress.finish(args.stream)
    return 0
