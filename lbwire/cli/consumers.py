"""Following consumers: `lag` (how far a cursor is behind) and `group` (consume, describe)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from .common import (
    EXIT_NOT_FOUND,
    CommandError,
    MessagePrinter,
    add_command,
    interruptible,
    make_client,
    output_options,
    print_table,
    run_async,
)

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add `lag` and `group` to the `lbwire` parser."""
    _register_lag(commands)
    _register_group(commands)


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
    output_options(consume)
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
    printer = MessagePrinter(args.format)
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
