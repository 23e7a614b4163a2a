"""The activity stream against a real server: one typed event per change, each once.

The server writes ``__activity`` itself; to test what it only does after a
fail-over (publishing an event again) or in a newer version (an op this lbwire
does not know), a test publishes such an event into ``__activity`` itself,
which the server allows.
"""

from __future__ import annotations

import anyio
import pytest
from activity_support import about, content, next_activity_offset, raw_value, take
from helpers import aclosing, wait_until

from lbwire import wire
from lbwire.activity import (
    ACTIVITY_STREAM,
    ActivityEvent,
    ConsumerJoined,
    ConsumerLeft,
    StreamCreated,
    StreamDeleted,
    StreamPaused,
    StreamReadonlySet,
    StreamResumed,
    UnknownActivity,
)
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorAlreadyExists, ErrorNotFound, LiftbridgeError
from lbwire.testing import LiftbridgeServer
from lbwire.types import StartPosition

pytestmark = [pytest.mark.anyio, pytest.mark.server]


async def test_each_change_yields_one_event_in_order(
    client: LiftbridgeClient, stream_name: str
) -> None:
    group = f"{stream_name}-group"
    start = await next_activity_offset(client)
    await client.create_stream(stream_name, wait_for_stream=True)
    await client.pause_stream(stream_name, resume_all=True)
    await client.publish(b"wake up", stream=stream_name)  # resumes the paused partition
    await client.set_stream_readonly(stream_name)
    await client.join_consumer_group(group, "c1", [stream_name])
    await client.join_consumer_group(group, "c2", [stream_name])
    await client.leave_consumer_group(group, "c1")
    await client.leave_consumer_group(group, "c2")
    await client.delete_stream(stream_name)

    events = await take(client.activity(start_offset=start), 9, about(stream_name, group))

    assert [content(e) for e in events] == [
        StreamCreated(0, 0, 0, stream_name, (0,)),
        StreamPaused(0, 0, 0, stream_name, (0,), True),
        StreamResumed(0, 0, 0, stream_name, (0,)),
        StreamReadonlySet(0, 0, 0, stream_name, (0,), True),
        ConsumerJoined(0, 0, 0, group, "c1", (stream_name,)),
        ConsumerJoined(0, 0, 0, group, "c2", (stream_name,)),
        ConsumerLeft(0, 0, 0, group, "c1", False),
        ConsumerLeft(0, 0, 0, group, "c2", False),
        StreamDeleted(0, 0, 0, stream_name),
    ]
    offsets, ids = [e.offset for e in events], [e.id for e in events]
    assert offsets == sorted(set(offsets))
    assert offsets[0] >= start
    assert ids == sorted(set(ids))
    assert all(e.timestamp > 0 for e in events)


async def test_resuming_from_an_offset_yields_exactly_the_later_events(
    client: LiftbridgeClient, stream_name: str
) -> None:
    names = [f"{stream_name}-{i}" for i in range(3)]
    start = await next_activity_offset(client)
    for name in names:
        await client.create_stream(name)
    first, *later = await take(client.activity(start_offset=start), 3, about(*names))

    resumed = await take(
        client.activity(start_offset=first.offset + 1, after_id=first.id), 2, about(*names)
    )

    assert resumed == later
    # The start offset is inclusive.
    assert await take(client.activity(start_offset=later[-1].offset), 1) == [later[-1]]


async def test_earliest_starts_at_the_first_event(client: LiftbridgeClient) -> None:
    [first] = await take(client.activity(start_position=StartPosition.EARLIEST), 1)

    assert first.offset == 0
    assert content(first) == StreamCreated(0, 0, 0, ACTIVITY_STREAM, (0,))


async def test_latest_starts_at_the_newest_event(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name)
    await wait_until(
        lambda: newest_event_is_about(client, stream_name),
        "the stream's creation is the newest event",
    )

    [newest] = await take(client.activity(start_position=StartPosition.LATEST), 1)

    assert content(newest) == StreamCreated(0, 0, 0, stream_name, (0,))


async def test_a_timestamp_start_yields_the_events_from_that_time(
    client: LiftbridgeClient, stream_name: str
) -> None:
    names = [f"{stream_name}-{i}" for i in range(2)]
    start = await next_activity_offset(client)
    for name in names:
        await client.create_stream(name)
    first, second = await take(client.activity(start_offset=start), 2, about(*names))
    # A millisecond early: seconds as a float cannot hold every nanosecond.
    since = (first.timestamp - 1_000_000) / 1e9

    from_then = await take(client.activity(start_timestamp=since), 2, about(*names))

    assert from_then == [first, second]


async def test_resume_starts_after_the_event_a_cursor_marks_processed(
    client: LiftbridgeClient, stream_name: str
) -> None:
    names = [f"{stream_name}-{i}" for i in range(2)]
    start = await next_activity_offset(client)
    for name in names:
        await client.create_stream(name)
    first, second = await take(client.activity(start_offset=start), 2, about(*names))
    await client.wait_for_cursors(timeout=30)
    await client.set_cursor(ACTIVITY_STREAM, 0, stream_name, first.offset)

    resumed = client.activity(start_position=StartPosition.RESUME, cursor_id=stream_name)

    assert await take(resumed, 1, about(*names)) == [second]


async def newest_event_is_about(client: LiftbridgeClient, stream: str) -> bool:
    """Whether the newest stored activity event is about `stream`."""
    newest = await next_activity_offset(client) - 1
    return newest >= 0 and stream.encode() in await raw_value(client, newest)


async def test_new_only_yields_only_events_after_iteration_starts(
    client: LiftbridgeClient, stream_name: str
) -> None:
    before = f"{stream_name}-before"
    await client.create_stream(before)
    # The server publishes the event after the call returns: wait until it is
    # stored, or it would be new to a reader starting now.
    await wait_until(lambda: newest_event_is_about(client, before), "the event is stored")
    later = [f"{stream_name}-after-{i}" for i in range(100)]
    seen: list[ActivityEvent] = []

    async with aclosing(client.activity()) as events:

        async def first_event() -> None:
            seen.append(await events.__anext__())

        async def seen_after_creating_one_more() -> bool:
            if not seen:
                await client.create_stream(later.pop(0))
            return bool(seen)

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_event)
            await wait_until(seen_after_creating_one_more, "an event arrives", interval=0.1)

    assert isinstance(seen[0], StreamCreated)
    assert seen[0].stream.startswith(f"{stream_name}-after-")


async def test_a_republished_event_is_yielded_once(
    client: LiftbridgeClient, stream_name: str
) -> None:
    first, second = f"{stream_name}-a", f"{stream_name}-b"
    start = await next_activity_offset(client)
    await client.create_stream(first)
    [created] = await take(client.activity(start_offset=start), 1, about(first))
    # What a new activity manager writes after a fail-over: the same event again.
    await client.publish(await raw_value(client, created.offset), stream=ACTIVITY_STREAM)
    await client.create_stream(second)

    events = await take(client.activity(start_offset=start), 2, about(first, second))

    assert [content(e) for e in events] == [
        StreamCreated(0, 0, 0, first, (0,)),
        StreamCreated(0, 0, 0, second, (0,)),
    ]
    # The repeat is really there: read raw, the id occurs twice.
    stored = []
    async with aclosing(client.subscribe(ACTIVITY_STREAM, start_offset=start)) as messages:
        async for message in messages:
            event = wire.ActivityStreamEvent.decode(message.value)
            stored.append(event.id)
            if event.createStreamOp is not None and event.createStreamOp.stream == second:
                break
    assert stored.count(created.id) == 2


async def test_a_reopened_reader_skips_a_later_republish_given_after_id(
    client: LiftbridgeClient, stream_name: str
) -> None:
    first, second = f"{stream_name}-a", f"{stream_name}-b"
    start = await next_activity_offset(client)
    await client.create_stream(first)
    [created] = await take(client.activity(start_offset=start), 1, about(first))
    await client.publish(await raw_value(client, created.offset), stream=ACTIVITY_STREAM)
    await client.create_stream(second)

    reopened = client.activity(start_offset=created.offset + 1, after_id=created.id)
    [after] = await take(reopened, 1, about(first, second))
    # Without after_id the reader cannot know the repeat was seen before.
    [unaware] = await take(client.activity(start_offset=created.offset + 1), 1)

    assert content(after) == StreamCreated(0, 0, 0, second, (0,))
    assert unaware.id == created.id
    assert unaware.offset > created.offset


async def test_an_event_of_an_unknown_kind_is_yielded_as_unknown(
    client: LiftbridgeClient, stream_name: str
) -> None:
    first, second = f"{stream_name}-a", f"{stream_name}-b"
    start = await next_activity_offset(client)
    await client.create_stream(first)
    [created] = await take(client.activity(start_offset=start), 1, about(first))
    # As a newer server would write it: a new op and a field this lbwire lacks.
    # Its id comes right after the creation's; the server's next event has a
    # higher one (the Raft index of its own bookkeeping lies between).
    future = wire.ActivityStreamEvent(id=created.id + 1, op=42).encode() + b"\x52\x02hi"
    await client.publish(future, stream=ACTIVITY_STREAM)
    await client.create_stream(second)

    events = await take(
        client.activity(start_offset=start),
        3,
        lambda e: about(first, second)(e) or isinstance(e, UnknownActivity),
    )

    assert [content(e) for e in events] == [
        StreamCreated(0, 0, 0, first, (0,)),
        UnknownActivity(0, 0, 0, 42, future),
        StreamCreated(0, 0, 0, second, (0,)),
    ]
    assert events[1].id == created.id + 1


async def test_no_event_is_repeated_or_lost_across_a_server_restart(
    activity_server: LiftbridgeServer, client: LiftbridgeClient, stream_name: str
) -> None:
    names = [f"{stream_name}-{i}" for i in range(3)]
    start = await next_activity_offset(client)
    seen: list[ActivityEvent] = []

    async def read() -> None:
        async for event in client.activity(start_offset=start):
            if about(*names)(event):
                seen.append(event)

    async def create(name: str) -> bool:
        try:
            await client.create_stream(name)
        except ErrorAlreadyExists:
            pass  # created by an attempt whose reply was lost
        except LiftbridgeError:
            return False  # the restarted server is not ready yet
        return True

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        await client.create_stream(names[0])
        await wait_until(lambda: len(seen) == 1, "the first creation is read")
        await activity_server.arestart()
        await wait_until(lambda: create(names[1]), f"{names[1]} is created")
        # A restarted activity manager may publish an event again: make sure it did.
        await client.publish(await raw_value(client, seen[0].offset), stream=ACTIVITY_STREAM)
        await client.create_stream(names[2])
        await wait_until(lambda: len(seen) >= 3, "every creation is read")
        tg.cancel_scope.cancel()

    assert [content(e) for e in seen] == [StreamCreated(0, 0, 0, name, (0,)) for name in names]
    assert len({e.id for e in seen}) == 3


async def test_a_closed_reader_yields_nothing_more(client: LiftbridgeClient) -> None:
    events = client.activity(start_position=StartPosition.EARLIEST)
    [first] = await take(events, 1)

    with pytest.raises(StopAsyncIteration):
        await events.__anext__()
    assert first.offset == 0


async def test_a_server_without_activity_stream_is_named_in_the_error(
    liftbridge_server: LiftbridgeServer,
) -> None:
    async with LiftbridgeClient([liftbridge_server.broker]) as client:
        with pytest.raises(ErrorNotFound, match=r"activity\.stream\.enabled"):
            await take(client.activity(), 1)
