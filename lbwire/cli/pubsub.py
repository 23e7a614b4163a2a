"""Moving messages: `pub`, `sub`, `lag` and `group consume` (and `group describe`)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import queue
import re
import sys
import threading
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Deque, Dict, List, Optional

from .common import (
    EXIT_NOT_FOUND,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    CommandError,
    add_command,
    interruptible,
    leaf,
    make_client,
    message_json,
    print_table,
    run_async,
)

if TYPE_CHECKING:
    from ..types import Message

__all__ = ["parse_from", "parse_until", "register"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")


def register(commands: Any) -> None:
    """Add `pub`, `sub`, `lag` and `group` to the `lbwire` parser."""
    _register_pub(commands)
    _register_sub(commands)
    _register_lag(commands)
    _register_group(commands)


# ---------------------------------------------------------------------- pub


def _register_pub(commands: Any) -> None:
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


# ---------------------------------------------------------------------- sub


def parse_from(text: str, now: Optional[float] = None) -> Dict[str, Any]:
    """`subscribe` keyword arguments for a `--from` value.

    `earliest`, `latest`, `new`, an offset, an ISO-8601 time (local time
    when it has no zone), or a time relative to now such as `-5m`, `-2h`,
    `-30s`, `-1d`.

    Raises:
        CommandError: The value is none of these.
    """
    from ..types import StartPosition

    word = text.strip().lower()
    named = {
        "earliest": StartPosition.EARLIEST,
        "latest": StartPosition.LATEST,
        "new": StartPosition.NEW_ONLY,
    }
    if word in named:
        return {"start_position": named[word]}
    if word.isdigit():
        return {"start_offset": int(word)}
    relative = _RELATIVE.match(word)
    if relative:
        seconds = float(relative.group(1)) * _UNITS[relative.group(2)]
        return {"start_timestamp": (time.time() if now is None else now) - seconds}
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"--from wants earliest, latest, new, an offset, an ISO-8601 time or "
            f"a relative time like -5m, not {text!r}",
            EXIT_USAGE,
        ) from None
    return {"start_timestamp": moment.timestamp()}


def parse_until(text: str, now: Optional[float] = None) -> Dict[str, Any]:
    """`subscribe` keyword arguments for an `--until` value.

    `latest` (the newest message when the subscription starts), an offset,
    an ISO-8601 time, or a relative time such as `-5m`.

    Raises:
        CommandError: The value is none of these.
    """
    from ..types import StopPosition

    word = text.strip().lower()
    if word == "latest":
        return {"stop_position": StopPosition.STOP_LATEST}
    try:
        start = parse_from(text, now)
    except CommandError:
        start = {}
    if "start_offset" in start:
        return {"stop_offset": start["start_offset"]}
    if "start_timestamp" in start:
        return {"stop_timestamp": start["start_timestamp"]}
    raise CommandError(
        f"--until wants latest, an offset, an ISO-8601 time or a relative time "
        f"like -5m, not {text!r}",
        EXIT_USAGE,
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, metavar="N", help="stop after N messages")
    parser.add_argument(
        "--format",
        choices=["value", "json"],
        default="value",
        help="value: the value and a newline; json: one object per message "
        "(stream, partition, offset, timestamp, key, headers, encoding, value)",
    )


def _register_sub(commands: Any) -> None:
    sub = add_command(
        commands,
        "sub",
        help="print the messages of a stream (every partition, or --partition)",
        epilog="""\
examples:
  lbwire sub demo                          # new messages, until Ctrl-C
  lbwire sub demo --from earliest --count 10
  lbwire sub demo --from 1200 --format json
  lbwire sub demo --from -5m               # received in the last five minutes
  lbwire sub demo --from 2026-11-30T12:00:00Z
  lbwire sub demo --cursor reports         # resume, and commit as it goes
  lbwire sub demo --from earliest --until latest   # what is there now, then exit
  lbwire sub demo --partition 3 --reverse --count 5

Without --partition every partition is read, their messages interleaved (in
order within each): --from and --until apply to each partition, --cursor
keeps one cursor per partition, --count is the total; --reverse needs
--partition. In json output, `encoding` is "utf-8" when key, value and header values are all
text, else "base64" for all three.
""",
    )
    sub.add_argument("stream", help="stream name")
    sub.add_argument(
        "--partition", type=int, default=None, help="only this partition (default: all)"
    )
    sub.add_argument(
        "--from",
        dest="start",
        default=None,
        metavar="WHERE",
        help="earliest, latest, new (default), OFFSET, an ISO-8601 time or -5m/-2h/-1d",
    )
    sub.add_argument(
        "--until",
        metavar="WHERE",
        help="stop after this message: latest (the newest when starting), OFFSET, "
        "an ISO-8601 time or -5m/-2h/-1d",
    )
    sub.add_argument(
        "--reverse",
        action="store_true",
        help="read from the newest message backwards (needs --partition)",
    )
    sub.add_argument("--resume", action="store_true", help="resume the partition if it is paused")
    sub.add_argument(
        "--cursor",
        metavar="ID",
        help="resume where cursor ID points (else start at --from) and store the "
        "position as messages are printed",
    )
    _output_options(sub)
    sub.set_defaults(run=run_async(_sub))


class _Printer:
    """Writes messages to stdout in batches; its owner flushes it as well."""

    def __init__(self, fmt: str) -> None:
        self.out = sys.stdout.buffer
        self.json = fmt == "json"
        self.parts: List[bytes] = []
        self.written = 0
        self.last_offset = -1

    def write(self, msg: Message) -> None:
        if self.json:
            self.parts.append(message_json(msg).encode())
        else:
            self.parts.append(msg.value)
        self.written += 1
        self.last_offset = msg.offset
        if len(self.parts) >= 512:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.parts.append(b"")
            self.out.write(b"\n".join(self.parts))
            self.parts.clear()
        self.out.flush()

    async def flush_periodically(self, commit: Optional[Any] = None) -> None:
        """Flush what was written (and commit it) a few times a second."""
        import anyio

        flushed = 0
        while True:
            await anyio.sleep(0.1)
            if self.written != flushed:
                flushed = self.written
                self.flush()
                if commit is not None:
                    await commit(self.last_offset)


async def _sub(args: argparse.Namespace) -> int:
    import anyio

    from ..error import ErrorInvalidArgument, ErrorNotFound, ErrorPartitionPaused
    from ..types import StartPosition

    start = parse_from(args.start or "new")
    stop = parse_until(args.until) if args.until else {}
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1", EXIT_USAGE)
    if args.partition is None:
        if args.reverse:
            raise CommandError("--reverse needs --partition", EXIT_USAGE)
        return await _sub_stream(args, start, stop)
    printer = _Printer(args.format)
    committed = -1
    async with make_client(args) as client:

        async def commit(offset: int) -> None:
            nonlocal committed
            if args.cursor and offset > committed:
                await client.set_cursor(args.stream, args.partition, args.cursor, offset)
                committed = offset

        if args.cursor and await client.get_cursor(args.stream, args.partition, args.cursor) >= 0:
            start = {"start_position": StartPosition.RESUME, "cursor_id": args.cursor}
        if args.reverse:
            start["reverse"] = True
        try:
            messages: Any = client.subscribe(
                args.stream, partition=args.partition, resume=args.resume, **start, **stop
            )
            with interruptible():
                async with anyio.create_task_group() as flusher:
                    flusher.start_soon(printer.flush_periodically, commit)
                    try:
                        async for msg in messages:
                            printer.write(msg)
                            if args.count is not None and printer.written >= args.count:
                                break
                    finally:
                        await messages.aclose()
                    flusher.cancel_scope.cancel()
        except Exception as exc:
            cause = leaf(exc)
            if args.reverse and isinstance(cause, (ErrorInvalidArgument, TypeError)):
                raise CommandError(
                    f"--reverse is not supported: {cause}", EXIT_UNSUPPORTED
                ) from None
            if isinstance(cause, ErrorNotFound):
                raise CommandError(
                    f"stream {args.stream!r} partition {args.partition} does not exist",
                    EXIT_NOT_FOUND,
                ) from None
            if isinstance(cause, ErrorPartitionPaused):
                raise CommandError(
                    f"stream {args.stream!r} partition {args.partition} is paused "
                    "(--resume resumes it)"
                ) from None
            raise
        finally:
            # Also on Ctrl-C: what was printed is committed before exiting.
            with anyio.CancelScope(shield=True):
                printer.flush()
                if printer.written:
                    await commit(printer.last_offset)
    return 0


async def _sub_stream(args: argparse.Namespace, start: Dict[str, Any], stop: Dict[str, Any]) -> int:
    """`sub` without --partition: every partition, with the whole-stream reader."""
    import anyio

    from ..error import ErrorNotFound, ErrorPartitionPaused

    printer = _Printer(args.format)
    async with make_client(args) as client:
        try:
            reader = client.reader(
                args.stream,
                cursor_id=args.cursor,
                auto_commit=False,
                resume=args.resume,
                **start,
                **stop,
            )
            async with reader:

                async def commit(_: int) -> None:
                    # Everything printed is flushed by now: commit it all.
                    if args.cursor:
                        await _commit_printed(reader)

                try:
                    with interruptible():
                        async with anyio.create_task_group() as flusher:
                            flusher.start_soon(printer.flush_periodically, commit)
                            async for msg in reader:
                                printer.write(msg)
                                if args.count is not None and printer.written >= args.count:
                                    break
                            flusher.cancel_scope.cancel()
                finally:
                    # Also on Ctrl-C: what was printed is committed before exiting.
                    with anyio.CancelScope(shield=True):
                        printer.flush()
                        if args.cursor:
                            await _commit_printed(reader)
        except Exception as exc:
            cause = leaf(exc)
            if isinstance(cause, ErrorNotFound):
                raise CommandError(
                    f"stream {args.stream!r} does not exist", EXIT_NOT_FOUND
                ) from None
            if isinstance(cause, ErrorPartitionPaused):
                raise CommandError(
                    f"a partition of stream {args.stream!r} is paused (--resume resumes it)"
                ) from None
            raise
    return 0


async def _commit_printed(reader: Any) -> None:
    """Commit every message the reader handed out (all of them printed)."""
    committed = reader.committed()
    printed = {
        partition: offset
        for partition, offset in reader.position().items()
        if offset is not None and offset != committed[partition]
    }
    if printed:
        await reader.commit(printed)


# ---------------------------------------------------------------------- lag


def _register_lag(commands: Any) -> None:
    lag = add_command(
        commands,
        "lag",
        help="show how far cursor ID is behind each partition of STREAM",
        epilog="""\
examples:
  lbwire lag orders --cursor billing
  lbwire lag orders --cursor billing --format json

One line per partition: the high watermark (offset of the newest committed
message, -1 if none), the committed position (the next offset to read by the
cursor, "-" if none is stored) and the lag (messages after the last one
processed: high watermark + 1 - committed; the whole partition without a
cursor). The client's cursor convention (gufo-liftbridge's: the cursor holds
the next offset) is how the cursor is read. In json output, one object per line.
""",
    )
    lag.add_argument("stream", help="stream name")
    lag.add_argument("--cursor", metavar="ID", required=True, help="cursor id")
    lag.add_argument(
        "--partition", type=int, action="append", help="only this partition (repeatable)"
    )
    lag.add_argument("--format", choices=["table", "json"], default="table")
    lag.set_defaults(run=run_async(_lag))


async def _lag(args: argparse.Namespace) -> int:
    from ..error import ErrorNotFound
    from ..reader import stream_lag

    async with make_client(args) as client:
        try:
            rows = await stream_lag(client, args.stream, args.cursor, args.partition)
        except ErrorNotFound as exc:
            raise CommandError(f"{exc}", EXIT_NOT_FOUND) from None
    if args.format == "json":
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)))
        return 0
    print_table(
        [
            [
                str(row.partition),
                str(row.high_watermark),
                "-" if row.committed is None else str(row.committed),
                str(row.lag),
            ]
            for row in rows
        ],
        ["PARTITION", "HIGH WATERMARK", "COMMITTED", "LAG"],
    )
    return 0


# ---------------------------------------------------------------------- group


def _register_group(commands: Any) -> None:
    group = commands.add_parser(
        "group",
        help="consume as a member of a consumer group, or describe one",
        description="Consume as a member of a consumer group, or describe one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""\
examples:
  lbwire group consume billing orders refunds --from earliest
  lbwire group describe billing
""",
    )
    actions = group.add_subparsers(title="actions", metavar="ACTION", required=True)
    consume = add_command(
        actions,
        "consume",
        help="join GROUP for STREAMs and print the messages of the partitions it assigns",
        epilog="""\
examples:
  lbwire group consume billing orders
  lbwire group consume billing orders refunds --from earliest --format json

Positions are committed to the group (cursor "__group:GROUP") as messages are
printed and on exit; --from applies to partitions the group has no position for.
""",
    )
    consume.add_argument("group", help="consumer group id")
    consume.add_argument("streams", nargs="+", metavar="STREAM", help="streams to consume")
    consume.add_argument(
        "--from",
        dest="start",
        choices=["earliest", "latest", "new"],
        default="new",
        help="where to start partitions without a committed position (default: new)",
    )
    consume.add_argument("--consumer-id", help="this member's id (default: a random one)")
    _output_options(consume)
    consume.set_defaults(run=run_async(_group_consume), spill_into="streams")

    describe = add_command(
        actions,
        "describe",
        help="show GROUP's coordinator (broker id and address) and epoch",
        epilog="""\
examples:
  lbwire group describe billing
  lbwire group describe billing --format json

The server's API keeps no member list: only the coordinator knows a group's
members, from their polls.
""",
    )
    describe.add_argument("group", help="consumer group id")
    describe.add_argument("--format", choices=["table", "json"], default="table")
    describe.set_defaults(run=run_async(_group_describe))


async def _group_consume(args: argparse.Namespace) -> int:
    import anyio

    from ..consumer import AutoOffset

    auto = {
        "earliest": AutoOffset.EARLIEST,
        "latest": AutoOffset.LATEST,
        "new": AutoOffset.NEW_ONLY,
    }
    printer = _Printer(args.format)
    async with make_client(args) as client:
        member = client.consumer(
            args.group, args.streams, consumer_id=args.consumer_id, auto_offset=auto[args.start]
        )
        # Interrupted, the member still leaves the group and commits on exit.
        async with member:
            with interruptible():
                async with anyio.create_task_group() as flusher:
                    flusher.start_soon(printer.flush_periodically)
                    try:
                        async for msg in member:
                            printer.write(msg)
                            if args.count is not None and printer.written >= args.count:
                                break
                    finally:
                        printer.flush()
                    flusher.cancel_scope.cancel()
    return 0


async def _group_describe(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        metadata = await client.get_metadata(groups=[args.group])
    if not metadata.groups:
        raise CommandError(f"consumer group {args.group!r} does not exist", EXIT_NOT_FOUND)
    (group,) = metadata.groups
    address = next((b.address for b in metadata.brokers if b.id == group.coordinator), "")
    if args.format == "json":
        print(json.dumps({**dataclasses.asdict(group), "coordinator_address": address}))
        return 0
    print_table(
        [[group.group_id, group.coordinator, address or "-", str(group.epoch)]],
        ["GROUP", "COORDINATOR", "ADDRESS", "EPOCH"],
    )
    return 0
