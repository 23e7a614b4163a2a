"""Cluster and partition metadata, and waiting for streams."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
import pytest
from client_support import HANG_GUARD, publish_values
from helpers import CallCounter, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
    ErrorNotFound,
    ErrorPartitionPaused,
    ErrorUnavailable,
)
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer
from lbwire.types import ConsumerGroupMetadata, PartitionEventTimestamps

pytestmark = pytest.mark.anyio


async def test_get_metadata_lists_the_broker_and_every_stream(
    client: LiftbridgeClient, stream: str, liftbridge_server: LiftbridgeServer
) -> None:
    metadata = await client.get_metadata()
    (broker,) = metadata.brokers
    assert (broker.host, broker.port) == ("127.0.0.1", liftbridge_server.port)
    assert broker.address == liftbridge_server.broker
    names = {s.name for s in metadata.metadata}
    assert {stream, "__cursors"} <= names


async def test_get_metadata_of_one_stream_returns_only_that_stream(
    client: LiftbridgeClient, stream: str
) -> None:
    metadata = await client.get_metadata(stream)
    assert [s.name for s in metadata.metadata] == [stream]
    (meta,) = metadata.metadata
    assert meta.creation_timestamp > 0
    (partition,) = meta.partitions.values()
    assert partition.leader == metadata.brokers[0].id
    assert partition.isr == partition.replicas == [partition.leader]


async def test_get_metadata_of_missing_stream_returns_no_stream(
    client: LiftbridgeClient, stream_name: str
) -> None:
    assert (await client.get_metadata(stream_name)).metadata == []


async def test_partition_metadata_of_empty_partition_has_no_offsets(
    client: LiftbridgeClient, stream: str
) -> None:
    partition = await client.get_partition_metadata(stream, 0)
    assert (partition.id, partition.high_watermark, partition.newest_offset) == (0, -1, -1)
    assert not partition.paused
    assert not partition.readonly


async def test_partition_metadata_reports_newest_offset_and_high_watermark_after_publishes(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"a", b"b", b"c"])
    partition = await client.get_partition_metadata(stream, 0)
    assert (partition.high_watermark, partition.newest_offset) == (2, 2)


async def test_partition_metadata_of_other_partition_is_its_own(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await publish_values(client, stream_name, [b"a", b"b"], partition=1)
    first = await client.get_partition_metadata(stream_name, 0)
    second = await client.get_partition_metadata(stream_name, 1)
    assert (first.id, first.newest_offset) == (0, -1)
    assert (second.id, second.newest_offset) == (1, 1)


async def test_partition_metadata_of_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound, match=stream_name):
        await client.get_partition_metadata(stream_name, 0)


async def test_partition_metadata_of_missing_partition_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorNotFound, match="partition 3"):
        await client.get_partition_metadata(stream, 3)


async def test_partition_metadata_of_paused_partition_raises_partition_paused(
    client: LiftbridgeClient, stream: str
) -> None:
    # The server answers FailedPrecondition "should be sent to partition
    # leader": a paused partition has no running leader.
    await publish_values(client, stream, [b"a"])
    await client.pause_stream(stream)
    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorPartitionPaused, match="paused"):
        await client.get_partition_metadata(stream, 0)
    await publish_values(client, stream, [b"b"])  # resumes it
    assert (await client.get_partition_metadata(stream, 0)).newest_offset == 1


async def test_wait_for_stream_returns_once_the_stream_is_created(
    client: LiftbridgeClient, stream_name: str
) -> None:
    ready = anyio.Event()

    async def wait() -> None:
        await client.wait_for_stream(stream_name)
        ready.set()

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await client.create_stream(stream_name)
            await ready.wait()
    partition = await client.get_partition_metadata(stream_name, 0)
    assert partition.leader


async def test_wait_for_stream_with_timeout_raises_deadline_exceeded(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorDeadlineExceeded, match=stream_name) as caught:
        await client.wait_for_stream(stream_name, timeout=0.2)
    assert isinstance(caught.value, TimeoutError)


async def test_wait_for_stream_is_bounded_by_the_retry_policy_by_default(
    broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker], retry_policy=RetryPolicy(max_time=0.5)) as client:
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded, match=r"0\.5 s"):
            await client.wait_for_stream(stream_name)
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded, match=r"0\.5 s"):
            await client.get_metadata(stream_name, wait_for_stream=True)


async def test_wait_for_stream_with_timeout_none_waits_past_the_retry_policy(
    broker: str, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_time = 0.3
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    async with LiftbridgeClient([broker], retry_policy=RetryPolicy(max_time=max_time)) as client:
        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(client.wait_for_stream, stream_name, timeout=None))
                await wait_until(
                    lambda: (
                        len(counter.starts) > 1
                        and counter.starts[-1] - counter.starts[0] > 3 * max_time
                    ),
                    "the wait has asked for longer than the retry policy's max_time",
                )
                await client.create_stream(stream_name)
    # Polled with growing pauses, not every 50 ms.
    pauses = [b - a for a, b in zip(counter.starts, counter.starts[1:])]
    assert max(pauses) > 2 * min(pauses)


async def test_get_metadata_with_wait_for_stream_returns_the_ready_stream(
    client: LiftbridgeClient, stream_name: str
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.create_stream, stream_name)
        with anyio.fail_after(HANG_GUARD):
            metadata = await client.get_metadata(stream_name, wait_for_stream=True)
    (meta,) = metadata.metadata
    assert meta.partitions[0].leader


async def test_wait_for_cursors_returns_when_the_cursor_stream_is_ready(
    client: LiftbridgeClient,
) -> None:
    with anyio.fail_after(HANG_GUARD):
        await client.wait_for_cursors()
    assert [s.name for s in (await client.get_metadata("__cursors")).metadata] == ["__cursors"]


def assert_first_and_latest(
    timestamps: PartitionEventTimestamps, before: int, middle: int, after: int
) -> None:
    """The first event happened between `before` and `middle`, the latest after it."""
    first, latest = timestamps.first_timestamp, timestamps.latest_timestamp
    assert before <= first <= middle <= latest <= after


async def test_partition_event_timestamps_are_zero_before_any_event(
    client: LiftbridgeClient, stream: str
) -> None:
    never = PartitionEventTimestamps(0, 0)
    from_leader = await client.get_partition_metadata(stream, 0)
    (meta,) = (await client.get_metadata(stream)).metadata
    for partition in (from_leader, meta.partitions[0]):
        assert partition.messages_received_timestamps == never
        assert partition.pause_timestamps == never
        assert partition.readonly_timestamps == never


async def test_messages_received_timestamps_cover_the_publishes(
    client: LiftbridgeClient, stream: str
) -> None:
    before = time.time_ns()
    await publish_values(client, stream, [b"a"])
    middle = time.time_ns()
    await publish_values(client, stream, [b"b"])
    after = time.time_ns()
    from_leader = await client.get_partition_metadata(stream, 0)
    (meta,) = (await client.get_metadata(streams=[stream])).metadata
    for partition in (from_leader, meta.partitions[0]):
        assert_first_and_latest(partition.messages_received_timestamps, before, middle, after)
        assert partition.pause_timestamps.first_timestamp == 0


async def test_readonly_timestamps_record_setting_and_clearing_the_flag(
    client: LiftbridgeClient, stream: str
) -> None:
    before = time.time_ns()
    await client.set_stream_readonly(stream)
    middle = time.time_ns()
    await client.set_stream_readonly(stream, readonly=False)
    after = time.time_ns()
    from_leader = await client.get_partition_metadata(stream, 0)
    (meta,) = (await client.get_metadata(stream)).metadata
    for partition in (from_leader, meta.partitions[0]):
        assert_first_and_latest(partition.readonly_timestamps, before, middle, after)
        assert not partition.readonly


async def test_pause_timestamps_record_the_pause_and_the_resume(
    client: LiftbridgeClient, stream: str
) -> None:
    before = time.time_ns()
    await client.pause_stream(stream)
    paused = time.time_ns()
    # Paused, the partition has no leader to ask: the cluster metadata tells.
    (meta,) = (await client.get_metadata(stream)).metadata
    pause = meta.partitions[0].pause_timestamps
    assert meta.partitions[0].paused
    assert before <= pause.first_timestamp == pause.latest_timestamp <= paused
    await publish_values(client, stream, [b"a"])  # resumes it
    resumed = (await client.get_partition_metadata(stream, 0)).pause_timestamps
    assert resumed.first_timestamp == pause.first_timestamp
    assert paused <= resumed.latest_timestamp <= time.time_ns()


async def test_get_metadata_of_several_streams_answers_for_those_that_exist(
    client: LiftbridgeClient, stream_name: str, liftbridge_server: LiftbridgeServer
) -> None:
    names = [f"{stream_name}-{i}" for i in range(3)]
    for name in names[:2]:
        await client.create_stream(name, partitions=2)
    with anyio.fail_after(HANG_GUARD):
        metadata = await client.get_metadata(streams=names[:2], wait_for_stream=True)
    assert sorted(s.name for s in metadata.metadata) == names[:2]
    assert all(p.leader for s in metadata.metadata for p in s.partitions.values())
    metadata = await client.get_metadata(streams=names)
    assert sorted(s.name for s in metadata.metadata) == names[:2]
    assert [b.address for b in metadata.brokers] == [liftbridge_server.broker]
    assert client.cached_metadata.partition_count(names[0]) == 2


async def test_get_metadata_of_several_streams_is_one_call(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, wait_for_stream=True)
    taken: list[str] = []
    client.add_connection_listener(taken.append)
    await client.get_metadata(streams=[stream_name, "__cursors"], groups=["g-" + stream_name])
    assert len(taken) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stream": "a", "streams": ["b"]}, "not both"),
        ({"streams": "ab"}, "streams must be a list"),
        ({"groups": "g"}, "groups must be a list"),
    ],
)
async def test_get_metadata_refuses_ambiguous_names(
    client: LiftbridgeClient, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match=match):
        await client.get_metadata(**kwargs)


async def test_consumer_group_metadata_names_the_coordinator_and_epoch(
    client: LiftbridgeClient, stream: str
) -> None:
    group = "g-" + stream
    await client.wait_for_cursors()
    joined = await client.join_consumer_group(group, "member-1", [stream])
    try:
        described = await client.get_consumer_group_metadata(group)
        assert described == ConsumerGroupMetadata(group, joined.coordinator, joined.epoch)
        metadata = await client.get_metadata(stream, groups=[group, group + "-none"])
        assert metadata.groups == [described]
        assert [s.name for s in metadata.metadata] == [stream]
        assert described.coordinator in {b.id for b in metadata.brokers}
    finally:
        await client.leave_consumer_group(group, "member-1")


async def test_consumer_group_metadata_of_missing_group_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound, match=stream_name):
        await client.get_consumer_group_metadata(stream_name)
    assert (await client.get_metadata(groups=[stream_name])).groups == []


def test_an_answer_for_some_streams_changes_only_those_in_the_cache() -> None:
    # No server involved: the cache's rule for an answer of some streams.
    # A real broker answers only the streams asked for; an answer naming
    # others (a widened shared fetch narrowed later) must not replace them.
    from lbwire import wire
    from lbwire.metadata import MetadataCache

    def meta(name: str, leader: str) -> wire.StreamMetadata:
        partition = wire.PartitionMetadata(id=0, leader=leader, isr=[leader])
        return wire.StreamMetadata(name=name, partitions={0: partition})

    brokers = [wire.Broker(id="b1", host="127.0.0.1", port=1)]
    cache = MetadataCache()
    cache.update(
        wire.FetchMetadataResponse(
            brokers=brokers, streamMetadata=[meta("a", "b1"), meta("b", "b1")]
        )
    )
    gone = wire.StreamMetadata(name="a", error=wire.StreamMetadataError.UNKNOWN_STREAM)
    cache.update(
        wire.FetchMetadataResponse(brokers=brokers, streamMetadata=[gone, meta("c", "b1")]), ["a"]
    )
    assert set(cache.streams) == {"b"}


#: A refresh with the server down gives up fast: the waits outlast it.
SHORT_POLICY = RetryPolicy(attempts=100, initial_backoff=0.02, max_backoff=0.1, max_time=0.3)


async def test_wait_for_stream_without_timeout_waits_through_refreshes_that_fail(
    fresh_server: LiftbridgeServer, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ready: list[bool] = []
    async with LiftbridgeClient([fresh_server.broker], retry_policy=SHORT_POLICY) as client:
        # The set-up's own bound: the short policy's 0.3 s ran out once under load.
        await client.create_stream(stream_name, wait_for_stream=True, timeout=HANG_GUARD)
        await fresh_server.akill()
        counter = CallCounter("FetchMetadata").install(monkeypatch)

        async def wait() -> None:
            await client.wait_for_stream(stream_name, timeout=None)
            ready.append(True)

        with anyio.fail_after(3 * HANG_GUARD):
            async with anyio.create_task_group() as tg:
                begun = anyio.current_time()
                tg.start_soon(wait)
                # Refreshes go on after one has run out of its policy.
                await wait_until(
                    lambda: bool(counter.between(begun + 3 * SHORT_POLICY.max_time, float("inf"))),
                    "refreshes after the policy's time",
                )
                assert not ready
                await fresh_server.astart()
    assert ready == [True]


async def test_wait_for_stream_with_a_timeout_ends_at_it_with_the_last_failure_as_cause(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([fresh_server.broker], retry_policy=SHORT_POLICY) as client:
        # The set-up's own bound: the short policy's 0.3 s ran out once under load.
        await client.create_stream(stream_name, wait_for_stream=True, timeout=HANG_GUARD)
        await fresh_server.akill()
        timeout = 4 * SHORT_POLICY.max_time
        begun = anyio.current_time()
        with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorDeadlineExceeded) as raised:
            await client.wait_for_stream(stream_name, timeout=timeout)
        assert anyio.current_time() - begun >= timeout
    assert isinstance(raised.value.__cause__, ErrorUnavailable)
    assert "last refresh" in str(raised.value)
