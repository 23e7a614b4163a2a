"""`lbwire sub`: print a stream's messages; the `--from` and `--until` grammar."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime
from typing import Any, Dict, Optional

from .common import (
    EXIT_NOT_FOUND,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    CommandError,
    MessagePrinter,
    add_command,
    interruptible,
    leaf,
    make_client,
    output_options,
    run_async,
)

__all__ = ["parse_from", "parse_until", "register"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")


def register(commands: Any) -> None:
    """Add `sub` to the `lbwire` parser."""
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
    output_options(sub)
    sub.set_defaults(run=run_async(_sub))


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
    printer = MessagePrinter(args.format)
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

    printer = MessagePrinter(args.format)
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
