"""Cluster administration: `stream ...`, `metadata`, `cursor ...`, `activity`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Dict, List

from .common import (
    EXIT_ALREADY_EXISTS,
    EXIT_NOT_FOUND,
    CommandError,
    add_command,
    formatter,
    make_client,
    run_async,
)

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the administration subcommands to the `lbwire` parser."""
    _register_stream(commands)
    _register_metadata(commands)
    _register_cursor(commands)
    _register_activity(commands)


# ---------------------------------------------------------------------- stream


def _register_stream(commands: Any) -> None:
    stream = commands.add_parser(
        "stream",
        help="create, delete, pause, make read-only or list streams",
        description="Create, delete, pause, make read-only or list streams.",
        epilog="""\
examples:
  lbwire stream create orders --partitions 3 --replication-factor 1
  lbwire stream list
  lbwire stream readonly orders            # refuse further publishes
  lbwire stream delete orders
""",
        formatter_class=formatter(),
    )
    actions = stream.add_subparsers(title="actions", metavar="ACTION", required=True)

    create = add_command(
        actions,
        "create",
        help="create a stream",
        epilog="""\
examples:
  lbwire stream create demo
  lbwire stream create orders --subject shop.orders --partitions 6 --replication-factor 3
  lbwire stream create demo --exist-ok     # succeed if it exists already
""",
    )
    create.add_argument("name", help="stream name")
    create.add_argument("--subject", help="NATS subject the stream reads (default: the name)")
    create.add_argument("--partitions", type=int, default=1, help="partitions (default: 1)")
    create.add_argument(
        "--replication-factor",
        type=int,
        default=1,
        help="replicas per partition, -1 for every broker (default: 1)",
    )
    create.add_argument("--minisr", type=int, default=0, help="minimum in-sync replicas")
    create.add_argument("--group", help="NATS queue group of the partitions' subscriptions")
    create.add_argument(
        "--retention-max-age",
        type=int,
        default=0,
        metavar="SECONDS",
        help="keep messages this long",
    )
    create.add_argument(
        "--exist-ok", action="store_true", help="do not fail if the stream exists already"
    )
    create.set_defaults(run=run_async(_stream_create))

    delete = add_command(
        actions,
        "delete",
        help="delete a stream and all its messages",
        epilog="examples:\n  lbwire stream delete demo\n",
    )
    delete.add_argument("name", help="stream name")
    delete.set_defaults(run=run_async(_stream_delete))

    pause = add_command(
        actions,
        "pause",
        help="pause a stream's partitions (a publish resumes them)",
        epilog="""\
examples:
  lbwire stream pause demo
  lbwire stream pause demo --partition 0 --resume-all
""",
    )
    pause.add_argument("name", help="stream name")
    pause.add_argument(
        "--partition",
        type=int,
        action="append",
        dest="partitions",
        help="pause only this partition (repeatable; default: all)",
    )
    pause.add_argument(
        "--resume-all",
        action="store_true",
        help="resume every partition when any one is published to",
    )
    pause.set_defaults(run=run_async(_stream_pause))

    readonly = add_command(
        actions,
        "readonly",
        help="make a stream's partitions read-only (or writable again with --off)",
        epilog="examples:\n  lbwire stream readonly demo\n  lbwire stream readonly demo --off\n",
    )
    readonly.add_argument("name", help="stream name")
    readonly.add_argument(
        "--partition",
        type=int,
        action="append",
        dest="partitions",
        help="only this partition (repeatable; default: all)",
    )
    readonly.add_argument("--off", action="store_true", help="make the partitions writable again")
    readonly.set_defaults(run=run_async(_stream_readonly))

    listing = add_command(
        actions,
        "list",
        help="list the streams",
        epilog="examples:\n  lbwire stream list\n  lbwire stream list --all --format json\n",
    )
    listing.add_argument(
        "--all", action="store_true", help="include internal streams (__cursors, __activity)"
    )
    listing.add_argument("--format", choices=["text", "json"], default="text")
    listing.set_defaults(run=run_async(_stream_list))


async def _stream_create(args: argparse.Namespace) -> int:
    from ..error import ErrorAlreadyExists

    async with make_client(args) as client:
        try:
            await client.create_stream(
                args.name,
                subject=args.subject,
                group=args.group,
                partitions=args.partitions,
                replication_factor=args.replication_factor,
                minisr=args.minisr,
                retention_max_age=args.retention_max_age,
            )
        except ErrorAlreadyExists:
            if not args.exist_ok:
                raise CommandError(
                    f"stream {args.name!r} already exists (--exist-ok accepts that)",
                    EXIT_ALREADY_EXISTS,
                ) from None
            return 0
    _note(f"created stream {args.name!r}")
    return 0


async def _stream_delete(args: argparse.Namespace) -> int:
    from ..error import ErrorNotFound

    async with make_client(args) as client:
        try:
            await client.delete_stream(args.name)
        except ErrorNotFound:
            raise CommandError(f"stream {args.name!r} does not exist", EXIT_NOT_FOUND) from None
    _note(f"deleted stream {args.name!r}")
    return 0


async def _stream_pause(args: argparse.Namespace) -> int:
    from ..error import ErrorNotFound

    async with make_client(args) as client:
        try:
            await client.pause_stream(
                args.name, partitions=args.partitions, resume_all=args.resume_all
            )
        except ErrorNotFound:
            raise CommandError(
                f"stream {args.name!r} (or a partition) does not exist", EXIT_NOT_FOUND
            ) from None
    _note(f"paused stream {args.name!r}")
    return 0


async def _stream_readonly(args: argparse.Namespace) -> int:
    from ..error import ErrorNotFound

    async with make_client(args) as client:
        try:
            await client.set_stream_readonly(
                args.name, partitions=args.partitions, readonly=not args.off
            )
        except ErrorNotFound:
            raise CommandError(
                f"stream {args.name!r} (or a partition) does not exist", EXIT_NOT_FOUND
            ) from None
    _note(f"stream {args.name!r} is now {'writable' if args.off else 'read-only'}")
    return 0


def _internal(name: str) -> bool:
    return name.startswith("__")


async def _stream_list(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        metadata = await client.get_metadata()
    names = sorted(s.name for s in metadata.metadata if args.all or not _internal(s.name))
    if args.format == "json":
        print(json.dumps(names))
    else:
        for name in names:
            print(name)
    return 0


def _note(text: str) -> None:
    sys.stderr.write(f"lbwire: {text}\n")


# ---------------------------------------------------------------------- metadata


def _register_metadata(commands: Any) -> None:
    metadata = add_command(
        commands,
        "metadata",
        help="show brokers, streams, partitions, leaders, ISR and offsets",
        epilog="""\
examples:
  lbwire metadata
  lbwire metadata orders                   # one stream
  lbwire metadata --format json | jq '.streams[].partitions[].leader'
""",
    )
    metadata.add_argument("stream", nargs="?", help="show only this stream")
    metadata.add_argument("--all", action="store_true", help="include internal streams")
    metadata.add_argument("--format", choices=["table", "json"], default="table")
    metadata.set_defaults(run=run_async(_metadata))


async def _metadata(args: argparse.Namespace) -> int:
    from ..error import ErrorNotFound

    async with make_client(args) as client:
        metadata = await client.get_metadata(args.stream)
    streams = [
        s
        for s in sorted(metadata.metadata, key=lambda s: s.name)
        if args.all or args.stream or not _internal(s.name)
    ]
    if args.stream and not any(s.name == args.stream and s.partitions for s in streams):
        raise ErrorNotFound(f"stream {args.stream!r} does not exist")
    if args.format == "json":
        out: Dict[str, Any] = {
            "brokers": [dataclasses.asdict(b) for b in metadata.brokers],
            "streams": [
                {
                    "name": s.name,
                    "subject": s.subject,
                    "creation_timestamp": s.creation_timestamp,
                    "partitions": [dataclasses.asdict(p) for _, p in sorted(s.partitions.items())],
                }
                for s in streams
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    brokers = [
        [b.id, b.address, str(b.partition_count), str(b.leader_count)]
        for b in sorted(metadata.brokers, key=lambda b: b.id)
    ]
    from .common import print_table

    print_table(brokers, ["BROKER", "ADDRESS", "PARTITIONS", "LEADS"])
    rows: List[List[str]] = []
    for s in streams:
        for number, p in sorted(s.partitions.items()):
            state = ",".join(
                word for word, on in (("paused", p.paused), ("readonly", p.readonly)) if on
            )
            rows.append(
                [
                    s.name,
                    s.subject,
                    str(number),
                    p.leader or "-",
                    ",".join(p.replicas),
                    ",".join(p.isr),
                    str(p.high_watermark),
                    str(p.newest_offset),
                    state or "-",
                ]
            )
    print()
    header = ["STREAM", "SUBJECT", "PARTITION", "LEADER", "REPLICAS", "ISR", "HW", "NEWEST"]
    print_table(rows, [*header, "STATE"])
    return 0


# ---------------------------------------------------------------------- cursor


def _register_cursor(commands: Any) -> None:
    cursor = commands.add_parser(
        "cursor",
        help="read or store a consumer's cursor",
        description="Read or store a cursor: the position a named consumer resumes from.",
        epilog="""\
A cursor holds the offset of the next message to read: `cursor set` takes the
offset of the last message processed and stores the one after it, and
`cursor get` prints the stored offset (-1 when there is none).

examples:
  lbwire cursor set orders billing 41      # processed up to offset 41
  lbwire cursor get orders billing         # prints 42
  lbwire sub orders --cursor billing       # resumes at 42
""",
        formatter_class=formatter(),
    )
    actions = cursor.add_subparsers(title="actions", metavar="ACTION", required=True)
    get = add_command(
        actions,
        "get",
        help="print the offset a cursor resumes from (-1: none stored)",
        epilog="examples:\n  lbwire cursor get orders billing --partition 2\n",
    )
    get.add_argument("stream", help="stream name")
    get.add_argument("cursor_id", metavar="CURSOR", help="cursor id")
    get.add_argument("--partition", type=int, default=0, help="partition (default: 0)")
    get.set_defaults(run=run_async(_cursor_get))
    put = add_command(
        actions,
        "set",
        help="store a cursor after processing the message at OFFSET",
        epilog="examples:\n  lbwire cursor set orders billing 41\n",
    )
    put.add_argument("stream", help="stream name")
    put.add_argument("cursor_id", metavar="CURSOR", help="cursor id")
    put.add_argument("offset", type=int, help="offset of the last processed message")
    put.add_argument("--partition", type=int, default=0, help="partition (default: 0)")
    put.set_defaults(run=run_async(_cursor_set))


async def _cursor_get(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        print(await client.get_cursor(args.stream, args.partition, args.cursor_id))
    return 0


async def _cursor_set(args: argparse.Namespace) -> int:
    async with make_client(args) as client:
        await client.set_cursor(args.stream, args.partition, args.cursor_id, args.offset)
    return 0


# ---------------------------------------------------------------------- activity


def _register_activity(commands: Any) -> None:
    activity = add_command(
        commands,
        "activity",
        help="follow the cluster's activity stream (streams created, deleted, paused...)",
        epilog=(
            "The server writes the activity stream only with "
            "`activity.stream.enabled: true`.\n\n"
            "examples:\n  lbwire activity\n"
            "  lbwire activity --from earliest --format json --count 10\n"
        ),
    )
    activity.add_argument(
        "--from",
        dest="start",
        default="new",
        help="earliest, latest, new (default), an offset, an ISO-8601 time or -5m",
    )
    activity.add_argument("--count", type=int, help="stop after this many events")
    activity.add_argument("--format", choices=["text", "json"], default="text")
    activity.set_defaults(run=run_async(_activity))


def _event_json(event: Any) -> str:
    fields = dataclasses.asdict(event)
    fields["kind"] = type(event).__name__
    return json.dumps(fields, default=str)


def _event_text(event: Any) -> str:
    details = ", ".join(
        f"{name}={value!r}"
        for name, value in dataclasses.asdict(event).items()
        if name not in ("offset", "id", "timestamp")
    )
    return f"{event.offset}: {type(event).__name__}({details})"


async def _activity(args: argparse.Namespace) -> int:
    from .sub import parse_from

    start = parse_from(args.start)
    async with make_client(args) as client:
        events = client.activity(**start)
        seen = 0
        try:
            async for event in events:
                line = _event_json(event) if args.format == "json" else _event_text(event)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
        finally:
            await events.aclose()
    return 0
