"""Creating, deleting, pausing and making streams read-only."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from client_support import collect, publish_values, read_all
from helpers import aclosing, wait_until
from helpers.frozen import frozen
from helpers.servers import by_generation

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorAckTimeout,
    ErrorAlreadyExists,
    ErrorDeadlineExceeded,
    ErrorEncryptionFailed,
    ErrorInvalidArgument,
    ErrorNotFound,
    ErrorPartitionPaused,
    ErrorReadonly,
)
from lbwire.grpc import Status
from lbwire.testing import LiftbridgeServer
from lbwire.types import AckPolicy, PartitionMetadata, StartPosition, StopPosition

pytestmark = pytest.mark.anyio


async def partitions_of(client: LiftbridgeClient, stream: str) -> dict[int, PartitionMetadata]:
    metadata = await client.get_metadata(stream)
    (meta,) = metadata.metadata
    return meta.partitions


# -- creating ---------------------------------------------------------------


async def test_create_stream_makes_stream_visible_in_metadata(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, wait_for_stream=True)
    metadata = await client.get_metadata(stream_name)
    assert [(s.name, s.subject) for s in metadata.metadata] == [(stream_name, stream_name)]


async def test_create_stream_accepts_every_option(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(
        stream_name,
        subject=f"{stream_name}.subject",
        group="workers",
        replication_factor=1,
        minisr=1,
        partitions=2,
        enable_compact=True,
        retention_max_age=3600,
        retention_max_bytes=1 << 20,
        retention_max_messages=1000,
        cleaner_interval=60,
        segment_max_age=600,
        segment_max_bytes=1 << 16,
        compact_max_goroutines=2,
        auto_pause_time=3600,
        auto_pause_disable_if_subscribers=True,
        optimistic_concurrency_control=True,
        encryption=False,
        wait_for_stream=True,
    )
    metadata = await client.get_metadata(stream_name)
    (meta,) = metadata.metadata
    assert meta.subject == f"{stream_name}.subject"
    assert sorted(meta.partitions) == [0, 1]
    ack = await client.publish(b"x", stream=stream_name, partition=1, expected_offset=0)
    assert ack is not None
    assert ack.offset == 0


async def test_partitions_option_sets_partition_count(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=5, wait_for_stream=True)
    assert sorted(await partitions_of(client, stream_name)) == [0, 1, 2, 3, 4]


async def test_replication_factor_all_brokers_gives_one_replica_on_one_node(
    client: LiftbridgeClient, stream_name: str, liftbridge_server: LiftbridgeServer
) -> None:
    await client.create_stream(stream_name, replication_factor=-1, wait_for_stream=True)
    (partition,) = (await partitions_of(client, stream_name)).values()
    assert len(partition.replicas) == 1
    assert partition.isr == partition.replicas == [partition.leader]


async def test_minisr_above_isr_size_withholds_ack_policy_all_acks(
    client: LiftbridgeClient, stream_name: str, liftbridge_server: LiftbridgeServer
) -> None:
    # One node: the ISR has one member, below minisr=2, so no AckPolicy.ALL
    # ack ever comes. v1.9.0 commits nothing then; the newest still commits
    # what was published without ALL (tests/test_server_generations.py).
    await client.create_stream(stream_name, minisr=2, wait_for_stream=True)
    leader_ack = await client.publish(b"a", stream=stream_name, ack_policy=AckPolicy.LEADER)
    assert leader_ack is not None
    with pytest.raises(ErrorAckTimeout):
        await client.publish(b"b", stream=stream_name, ack_policy=AckPolicy.ALL, ack_timeout=0.3)
    partition = await client.get_partition_metadata(stream_name, 0)
    expected_watermark = by_generation(liftbridge_server, v1_9_0=-1, newest=0)
    assert (partition.newest_offset, partition.high_watermark) == (1, expected_watermark)


async def test_retention_max_messages_drops_oldest_messages_when_cleaner_runs(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # One-byte segments roll after every message; the cleaner (every second)
    # deletes whole segments beyond the newest two messages.
    await client.create_stream(
        stream_name,
        retention_max_messages=2,
        segment_max_bytes=1,
        cleaner_interval=1,
        wait_for_stream=True,
    )
    await publish_values(client, stream_name, [b"0", b"1", b"2", b"3", b"4"])

    async def only_newest_two_left() -> bool:
        # Reads racing the cleaner see "segment has been closed" from the
        # server; the client subscribes again past it.
        return [m.offset for m in await read_all(client, stream_name)] == [3, 4]

    await wait_until(only_newest_two_left, "the cleaner dropped offsets 0-2")


async def test_compaction_keeps_only_the_newest_message_of_each_key(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(
        stream_name,
        enable_compact=True,
        compact_max_goroutines=1,
        segment_max_bytes=1,
        cleaner_interval=1,
        wait_for_stream=True,
    )
    for key, value in [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2"), (b"b", b"b2"), (b"c", b"c1")]:
        await client.publish(value, stream=stream_name, key=key)

    async def compacted() -> bool:
        return [m.value for m in await read_all(client, stream_name)] == [b"a2", b"b2", b"c1"]

    await wait_until(compacted, "the cleaner compacted the log")
    assert [m.offset for m in await read_all(client, stream_name)] == [2, 3, 4]


async def test_streams_on_the_same_subject_each_get_the_message(
    client: LiftbridgeClient, stream_name: str
) -> None:
    subject = f"{stream_name}.shared"
    for name in (f"{stream_name}-a", f"{stream_name}-b"):
        await client.create_stream(name, subject=subject, wait_for_stream=True)
    await client.publish_to_subject(b"fan-out", subject, ack_policy=AckPolicy.NONE)
    for name in (f"{stream_name}-a", f"{stream_name}-b"):
        (message,) = await collect(
            client.subscribe(name, start_position=StartPosition.EARLIEST), limit=1
        )
        assert message.value == b"fan-out"


async def test_group_delivers_each_message_to_one_stream_of_the_group(
    client: LiftbridgeClient, stream_name: str
) -> None:
    subject = f"{stream_name}.grouped"
    names = [f"{stream_name}-a", f"{stream_name}-b"]
    for name in names:
        await client.create_stream(name, subject=subject, group="g", wait_for_stream=True)
    # Each message is acked by the one stream of the queue group that got it.
    acks = [await client.publish_to_subject(b"%d" % i, subject) for i in range(10)]
    assert all(ack is not None for ack in acks)
    stored = [len(await read_all(client, name)) for name in names]
    assert sum(stored) == 10


async def test_auto_pause_time_pauses_idle_partition(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, auto_pause_time=1, wait_for_stream=True)

    async def paused() -> bool:
        return (await partitions_of(client, stream_name))[0].paused

    await wait_until(paused, "the idle partition was auto-paused")


async def test_create_existing_stream_raises_already_exists(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorAlreadyExists) as caught:
        await client.create_stream(stream)
    assert caught.value.status == Status.ALREADY_EXISTS
    assert "already exists" in str(caught.value).lower()


async def test_empty_stream_name_raises_value_error(client: LiftbridgeClient) -> None:
    with pytest.raises(ValueError, match="name"):
        await client.create_stream("")


@pytest.mark.parametrize("name", ["with space", "dot..dot", ".leading", "trailing.", "tab\tname"])
async def test_stream_name_that_is_no_valid_subject_raises_invalid_argument(
    client: LiftbridgeClient, name: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="Subject is invalid"):
        await client.create_stream(name)


async def test_invalid_subject_raises_invalid_argument(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="Subject is invalid"):
        await client.create_stream(stream_name, subject="a b")


async def test_reserved_stream_name_raises_invalid_argument(client: LiftbridgeClient) -> None:
    with pytest.raises(ErrorInvalidArgument, match="reserved"):
        await client.create_stream("__cursors")


@pytest.mark.parametrize(
    ("option", "value"), [("partitions", 0), ("replication_factor", 0), ("replication_factor", -2)]
)
async def test_invalid_partition_or_replication_count_raises_value_error(
    client: LiftbridgeClient, stream_name: str, option: str, value: int
) -> None:
    with pytest.raises(ValueError, match=option):
        await client.create_stream(stream_name, **{option: value})


async def test_replication_factor_above_cluster_size_raises_invalid_argument(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorInvalidArgument, match="replication"):
        await client.create_stream(stream_name, replication_factor=3)


async def test_encryption_without_server_key_raises_encryption_failed(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorEncryptionFailed) as caught:
        await client.create_stream(stream_name, encryption=True)
    assert caught.value.status == Status.FAILED_PRECONDITION
    assert "encryption" in str(caught.value)
    assert (await client.get_metadata(stream_name)).metadata == []


@pytest.fixture(scope="module")
def encrypting_server() -> Iterator[LiftbridgeServer]:
    """A server started with LIFTBRIDGE_ENCRYPTION_KEY (a 32-byte AES key)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LIFTBRIDGE_ENCRYPTION_KEY", "lbwire-test-key-0123456789abcdef")
        with LiftbridgeServer() as server:
            env.undo()
            yield server


async def test_encrypted_stream_round_trips_values(
    encrypting_server: LiftbridgeServer, stream_name: str
) -> None:
    async with LiftbridgeClient([encrypting_server.broker]) as client:
        await client.create_stream(stream_name, encryption=True, wait_for_stream=True)
        await publish_values(client, stream_name, [b"secret"])
        assert [m.value for m in await read_all(client, stream_name)] == [b"secret"]
    data = b"".join(p.read_bytes() for p in encrypting_server.data_dir.rglob("*.log"))
    assert b"secret" not in data


# -- deleting ---------------------------------------------------------------


async def test_delete_stream_removes_it_from_metadata(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.delete_stream(stream)
    assert (await client.get_metadata(stream)).metadata == []


async def test_publish_after_delete_stream_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"x"])
    await client.delete_stream(stream)
    with pytest.raises(ErrorNotFound):
        await client.publish(b"y", stream=stream)


async def test_delete_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound) as caught:
        await client.delete_stream(stream_name)
    assert "does not exist" in str(caught.value)


async def test_delete_reserved_stream_raises_invalid_argument(client: LiftbridgeClient) -> None:
    with pytest.raises(ErrorInvalidArgument, match="reserved"):
        await client.delete_stream("__cursors")


async def test_stream_can_be_recreated_after_delete(client: LiftbridgeClient, stream: str) -> None:
    await publish_values(client, stream, [b"old"])
    await client.delete_stream(stream)
    await client.create_stream(stream, wait_for_stream=True)
    assert await publish_values(client, stream, [b"new"]) == [0]
    assert [m.value for m in await read_all(client, stream)] == [b"new"]


# -- pausing ----------------------------------------------------------------


async def test_pause_stream_pauses_only_the_selected_partitions(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=3, wait_for_stream=True)
    await client.pause_stream(stream_name, partitions=[0, 2])
    partitions = await partitions_of(client, stream_name)
    assert {i: p.paused for i, p in partitions.items()} == {0: True, 1: False, 2: True}


async def test_pause_stream_without_partitions_pauses_all(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await client.pause_stream(stream_name)
    assert all(p.paused for p in (await partitions_of(client, stream_name)).values())


async def test_publish_resumes_only_the_paused_partition_it_goes_to(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await publish_values(client, stream_name, [b"other"], partition=0)
    await publish_values(client, stream_name, [b"before"], partition=1)
    await client.pause_stream(stream_name)
    assert await publish_values(client, stream_name, [b"after"], partition=1) == [1]
    assert [m.value for m in await read_all(client, stream_name, 1)] == [b"before", b"after"]
    with pytest.raises(ErrorPartitionPaused):
        await read_all(client, stream_name, 0)


async def test_publish_after_pause_with_resume_all_resumes_every_partition(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=3, wait_for_stream=True)
    for partition in (0, 1, 2):
        await publish_values(client, stream_name, [b"%d" % partition], partition=partition)
    await client.pause_stream(stream_name, resume_all=True)
    await publish_values(client, stream_name, [b"resume"], partition=0)
    for partition in (1, 2):
        assert [m.value for m in await read_all(client, stream_name, partition)] == [
            b"%d" % partition
        ]


async def test_metadata_keeps_reporting_paused_after_resume(
    client: LiftbridgeClient, stream: str
) -> None:
    # Server quirk (v1.9.0): FetchMetadata reads the partition's stored
    # `paused` flag, which a resume never clears.
    await client.pause_stream(stream)
    await publish_values(client, stream, [b"resumes"])
    assert await read_all(client, stream) != []
    assert (await partitions_of(client, stream))[0].paused


async def test_pause_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound):
        await client.pause_stream(stream_name)


async def test_pause_missing_partition_raises_not_found(
    client: LiftbridgeClient, stream: str
) -> None:
    with pytest.raises(ErrorNotFound):
        await client.pause_stream(stream, partitions=[7])


# -- read-only --------------------------------------------------------------


async def test_set_stream_readonly_marks_partitions_readonly(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await client.set_stream_readonly(stream_name, partitions=[1])
    partitions = await partitions_of(client, stream_name)
    assert {i: p.readonly for i, p in partitions.items()} == {0: False, 1: True}


async def test_publish_with_ack_to_readonly_partition_raises_error_readonly(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.set_stream_readonly(stream)
    with pytest.raises(ErrorReadonly) as caught:
        await client.publish(b"x", stream=stream)
    assert "readonly" in str(caught.value)
    assert (await client.get_partition_metadata(stream, 0)).newest_offset == -1


async def test_readonly_off_allows_publishing_again(client: LiftbridgeClient, stream: str) -> None:
    await client.set_stream_readonly(stream)
    await client.set_stream_readonly(stream, readonly=False)
    assert not (await partitions_of(client, stream))[0].readonly
    assert await publish_values(client, stream, [b"x"]) == [0]


async def test_subscription_to_readonly_partition_ends_after_last_message(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"a", b"b"])
    await client.set_stream_readonly(stream)
    messages = await read_all(client, stream, stop_position=StopPosition.STOP_ON_CANCEL)
    assert [m.value for m in messages] == [b"a", b"b"]


async def test_subscription_ends_when_partition_becomes_readonly(
    client: LiftbridgeClient, stream: str
) -> None:
    await publish_values(client, stream, [b"a"])
    subscription = client.subscribe(stream, start_position=StartPosition.EARLIEST)
    async with aclosing(subscription) as messages:
        with anyio.fail_after(10):
            assert (await messages.__anext__()).value == b"a"
            await client.set_stream_readonly(stream)
            rest = [m async for m in messages]
    assert rest == []


async def test_set_readonly_on_missing_stream_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    with pytest.raises(ErrorNotFound):
        await client.set_stream_readonly(stream_name)


async def test_create_stream_timing_out_mid_call_says_the_stream_may_exist(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    # A frozen broker took the connection and the request, and answers
    # nothing: whether it created the stream is unknown.
    async with LiftbridgeClient([fresh_server.broker]) as client:
        await client.get_metadata()  # the connection is open
        async with frozen(fresh_server):
            with pytest.raises(ErrorDeadlineExceeded, match="may have been created"):
                await client.create_stream(stream_name, timeout=0.5)
