"""Subscribing: start and stop positions, resuming, ends and errors."""

from __future__ import annotations

import gc

import anyio
import pytest
from client_support import HANG_GUARD, collect, publish_values, read_all
from helpers import aclosing, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorInvalidArgument, ErrorNotFound, ErrorPartitionPaused
from lbwire.types import Message, StartPosition, StopPosition

pytestmark = pytest.mark.anyio

VALUES = [b"m0", b"m1", b"m2", b"m3", b"m4"]


@pytest.fixture
async def five_messages(client: LiftbridgeClient, stream: str) -> str:
    """A stream holding VALUES at offsets 0-4."""
    await publish_values(client, stream, VALUES)
    return stream


def offsets(messages: list[Message]) -> list[int]:
    return [m.offset for m in messages]


async def first_message_published_while_subscribed(
    client: LiftbridgeClient, stream: str, **kwargs: object
) -> Message:
    """Subscribe, then publish until the subscription yields; return its first message.

    A publish made before the subscription is set up may be skipped (NEW_ONLY),
    so publishing goes on, one message per round, until one arrives.
    """
    received: list[Message] = []
    got_one = anyio.Event()

    async def consume() -> None:
        received.extend(await collect(client.subscribe(stream, **kwargs), limit=1))  # type: ignore[arg-type]
        got_one.set()

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            while not got_one.is_set():
                await client.publish(b"new", stream=stream)
                with anyio.move_on_after(0.05):
                    await got_one.wait()
    return received[0]


# -- start positions ----------------------------------------------------------


async def test_new_only_skips_messages_published_before_subscribing(
    client: LiftbridgeClient, five_messages: str
) -> None:
    message = await first_message_published_while_subscribed(
        client, five_messages, start_position=StartPosition.NEW_ONLY
    )
    assert message.offset >= 5
    assert message.value == b"new"


async def test_new_only_is_the_default_start_position(
    client: LiftbridgeClient, five_messages: str
) -> None:
    message = await first_message_published_while_subscribed(client, five_messages)
    assert message.offset >= 5


@pytest.mark.smoke
async def test_earliest_starts_at_the_oldest_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await collect(
        client.subscribe(five_messages, start_position=StartPosition.EARLIEST), limit=5
    )
    assert [m.value for m in messages] == VALUES
    assert offsets(messages) == [0, 1, 2, 3, 4]


async def test_latest_starts_at_the_newest_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await read_all(client, five_messages, start_position=StartPosition.LATEST)
    assert offsets(messages) == [4]


async def test_offset_position_starts_at_start_offset(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await read_all(
        client, five_messages, start_position=StartPosition.OFFSET, start_offset=3
    )
    assert offsets(messages) == [3, 4]


async def test_start_offset_alone_implies_offset_position(
    client: LiftbridgeClient, five_messages: str
) -> None:
    # gufo-liftbridge: start_offset wins over start_position.
    messages = await read_all(
        client, five_messages, start_position=StartPosition.NEW_ONLY, start_offset=2
    )
    assert offsets(messages) == [2, 3, 4]


async def test_start_offset_zero_reads_from_the_first_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await read_all(
        client, five_messages, start_position=StartPosition.NEW_ONLY, start_offset=0
    )
    assert offsets(messages) == [0, 1, 2, 3, 4]


async def test_negative_start_offset_reads_from_the_oldest_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await read_all(client, five_messages, start_offset=-3)
    assert offsets(messages) == [0, 1, 2, 3, 4]


async def test_start_offset_beyond_the_newest_waits_and_reads_the_next_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    # Server behaviour: it does not wait for offset 100, it delivers the next
    # message written.
    message = await first_message_published_while_subscribed(
        client, five_messages, start_offset=100
    )
    assert 5 <= message.offset < 100


async def test_timestamp_starts_at_the_first_message_at_or_after_it(
    client: LiftbridgeClient, five_messages: str
) -> None:
    stored = await read_all(client, five_messages)
    between = (stored[1].timestamp + stored[2].timestamp) / 2 / 1e9
    messages = await read_all(client, five_messages, start_timestamp=between)
    assert offsets(messages) == [2, 3, 4]


async def test_timestamp_position_with_start_timestamp_starts_there(
    client: LiftbridgeClient, five_messages: str
) -> None:
    stored = await read_all(client, five_messages)
    messages = await read_all(
        client,
        five_messages,
        start_position=StartPosition.TIMESTAMP,
        start_timestamp=stored[3].timestamp / 1e9 - 1e-6,
    )
    assert offsets(messages) == [3, 4]


async def test_resume_without_cursor_id_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="cursor_id"):
        await read_all(client, stream, start_position=StartPosition.RESUME)


async def test_unknown_start_position_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="start position"):
        await read_all(client, stream, start_position=42)


# -- stop positions -----------------------------------------------------------


async def test_stop_offset_ends_after_that_offset(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await collect(
        client.subscribe(five_messages, start_position=StartPosition.EARLIEST, stop_offset=2)
    )
    assert offsets(messages) == [0, 1, 2]


async def test_stop_offset_beyond_the_newest_waits_for_it_then_ends(
    client: LiftbridgeClient, five_messages: str
) -> None:
    received: list[Message] = []

    async def consume() -> None:
        received.extend(
            await collect(client.subscribe(five_messages, start_offset=3, stop_offset=6))
        )

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await publish_values(client, five_messages, [b"m5", b"m6", b"m7"])
    assert offsets(received) == [3, 4, 5, 6]


async def test_stop_latest_ends_at_the_newest_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await collect(
        client.subscribe(five_messages, start_offset=1, stop_position=StopPosition.STOP_LATEST)
    )
    assert offsets(messages) == [1, 2, 3, 4]


async def test_stop_timestamp_ends_before_later_messages(
    client: LiftbridgeClient, five_messages: str
) -> None:
    stored = await read_all(client, five_messages)
    between = (stored[2].timestamp + stored[3].timestamp) / 2 / 1e9
    messages = await collect(
        client.subscribe(
            five_messages, start_position=StartPosition.EARLIEST, stop_timestamp=between
        )
    )
    assert offsets(messages) == [0, 1, 2]


async def test_stop_latest_on_empty_partition_ends_with_nothing(
    client: LiftbridgeClient, stream: str
) -> None:
    messages = await collect(
        client.subscribe(
            stream, start_position=StartPosition.EARLIEST, stop_position=StopPosition.STOP_LATEST
        )
    )
    assert messages == []


async def test_new_only_with_stop_latest_ends_with_nothing(
    client: LiftbridgeClient, five_messages: str
) -> None:
    # The server refuses the request (stop before start); nothing is there to read.
    messages = await collect(
        client.subscribe(five_messages, stop_position=StopPosition.STOP_LATEST)
    )
    assert messages == []


async def test_new_only_on_readonly_partition_ends_with_nothing(
    client: LiftbridgeClient, five_messages: str
) -> None:
    await client.set_stream_readonly(five_messages)
    assert await collect(client.subscribe(five_messages)) == []


async def test_stop_offset_before_start_offset_raises_invalid_argument(
    client: LiftbridgeClient, five_messages: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="before start offset"):
        await collect(client.subscribe(five_messages, start_offset=3, stop_offset=1))


async def test_negative_stop_offset_raises_value_error(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="stop_offset"):
        await collect(client.subscribe(stream, stop_offset=-1))


@pytest.mark.parametrize("position", [StopPosition.STOP_OFFSET, StopPosition.STOP_TIMESTAMP])
async def test_stop_position_without_its_value_raises_value_error(
    client: LiftbridgeClient, stream: str, position: StopPosition
) -> None:
    with pytest.raises(ValueError, match=position.name):
        await collect(client.subscribe(stream, stop_position=position))


# -- reading ------------------------------------------------------------------


async def test_handshake_message_is_never_yielded(client: LiftbridgeClient, stream: str) -> None:
    await publish_values(client, stream, [b"only"])
    messages = await read_all(client, stream)
    assert [(m.offset, m.value, m.stream) for m in messages] == [(0, b"only", stream)]


async def test_messages_carry_stream_partition_offset_and_timestamp(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await publish_values(client, stream_name, [b"a", b"b"], partition=1)
    first, second = await read_all(client, stream_name, partition=1)
    assert (first.stream, first.partition, first.offset) == (stream_name, 1, 0)
    assert second.offset == 1
    assert 0 < first.timestamp <= second.timestamp
    assert first.subject == f"{stream_name}.1"


async def test_allow_isr_reads_from_an_in_sync_replica(
    client: LiftbridgeClient, five_messages: str
) -> None:
    messages = await read_all(client, five_messages, allow_isr=True)
    assert offsets(messages) == [0, 1, 2, 3, 4]


async def test_resume_true_reads_a_paused_partition_and_resumes_it(
    client: LiftbridgeClient, five_messages: str
) -> None:
    await client.pause_stream(five_messages)
    messages = await read_all(client, five_messages, resume=True)
    assert offsets(messages) == [0, 1, 2, 3, 4]
    # Resumed: later subscriptions need no resume flag.
    assert offsets(await read_all(client, five_messages)) == [0, 1, 2, 3, 4]


async def test_subscribing_to_paused_partition_without_resume_raises_partition_paused(
    client: LiftbridgeClient, five_messages: str
) -> None:
    await client.pause_stream(five_messages)
    with pytest.raises(ErrorPartitionPaused, match="resume=True"):
        await read_all(client, five_messages)


async def test_subscribe_to_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound, match=stream_name):
        await read_all(client, stream_name)


async def test_subscribe_to_missing_partition_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorNotFound, match="partition"):
        await read_all(client, stream, partition=2)


async def test_negative_partition_raises_value_error_and_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ValueError, match="Partition") as caught:
        await read_all(client, stream, partition=-1)
    # ErrorNotFound as gufo-liftbridge raises (the server's answer there).
    assert isinstance(caught.value, ErrorNotFound)


async def test_stream_deleted_while_subscribed_raises_not_found(
    client: LiftbridgeClient, five_messages: str
) -> None:
    subscription = client.subscribe(five_messages, start_position=StartPosition.EARLIEST)
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(subscription) as messages:
            assert (await messages.__anext__()).offset == 0
            await client.delete_stream(five_messages)
            with pytest.raises(ErrorNotFound):
                async for _ in messages:
                    pass


async def test_partition_paused_while_subscribed_raises_partition_paused(
    client: LiftbridgeClient, five_messages: str
) -> None:
    subscription = client.subscribe(five_messages, start_offset=4)
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(subscription) as messages:
            assert (await messages.__anext__()).offset == 4
            await client.pause_stream(five_messages)
            with pytest.raises(ErrorPartitionPaused, match=five_messages):
                await messages.__anext__()


# Breaking out without aclosing, as gufo-liftbridge code does: trio warns when
# it finalizes such a generator, and that warning is this test's premise.
@pytest.mark.filterwarnings("ignore:Async generator .* was garbage collected:ResourceWarning")
async def test_breaking_out_of_the_loop_ends_the_call_on_the_server(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # With auto_pause_disable_if_subscribers, the server auto-pauses the idle
    # partition only once it has no subscriber left: the pause proves the
    # call was cancelled.
    await client.create_stream(
        stream_name,
        auto_pause_time=1,
        auto_pause_disable_if_subscribers=True,
        wait_for_stream=True,
    )
    await publish_values(client, stream_name, [b"a", b"b"])
    with anyio.fail_after(HANG_GUARD):
        async for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
            assert message.offset == 0
            break
    # The abandoned generator is finalized (its call cancelled) when collected:
    # at once with reference counting, at the next collection on PyPy.
    gc.collect()

    async def paused() -> bool:
        (meta,) = (await client.get_metadata(stream_name)).metadata
        return meta.partitions[0].paused

    await wait_until(paused, "the partition without subscribers was auto-paused")


async def test_client_stays_usable_after_breaking_out_of_subscriptions(
    client: LiftbridgeClient, five_messages: str
) -> None:
    for _ in range(20):
        async with aclosing(
            client.subscribe(five_messages, start_position=StartPosition.EARLIEST)
        ) as messages:
            async for _message in messages:
                break
    assert await publish_values(client, five_messages, [b"m5"]) == [5]
    assert offsets(await read_all(client, five_messages, start_offset=4)) == [4, 5]


# Reverse subscriptions (refused on v1.9.0, offsets N..0 on the newest): test_reverse.py.
