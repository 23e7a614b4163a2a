"""Cursors: storing, fetching and resuming from them, on one and several partitions."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from client_support import publish_values, read_all

from lbwire.client import CURSOR_STREAM, LiftbridgeClient
from lbwire.testing import LiftbridgeServer
from lbwire.types import CursorConvention, StartPosition

pytestmark = pytest.mark.anyio

CURSOR_PARTITIONS = 3


@pytest.fixture
async def five_messages(client: LiftbridgeClient, stream: str) -> str:
    await publish_values(client, stream, [b"m0", b"m1", b"m2", b"m3", b"m4"])
    return stream


async def resumed_offsets(client: LiftbridgeClient, stream: str, cursor_id: str) -> list[int]:
    messages = await read_all(
        client, stream, start_position=StartPosition.RESUME, cursor_id=cursor_id
    )
    return [m.offset for m in messages]


# -- one cursor partition (the shared server) -------------------------------


async def test_missing_cursor_reads_as_minus_one(client: LiftbridgeClient, stream: str) -> None:
    assert await client.get_cursor(stream, 0, "never-set") == -1


async def test_set_cursor_stores_the_next_offset_by_default(
    client: LiftbridgeClient, stream: str
) -> None:
    # gufo-liftbridge's convention: set_cursor(offset=i) stores i + 1.
    await client.set_cursor(stream, 0, "reader", 4)
    assert await client.get_cursor(stream, 0, "reader") == 5


async def test_set_cursor_overwrites_the_previous_value(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.set_cursor(stream, 0, "reader", 1)
    await client.set_cursor(stream, 0, "reader", 0)
    assert await client.get_cursor(stream, 0, "reader") == 1


async def test_cursors_are_kept_per_stream_partition_and_id(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await client.create_stream(stream_name, partitions=2, wait_for_stream=True)
    await client.set_cursor(stream_name, 0, "a", 10)
    await client.set_cursor(stream_name, 1, "a", 20)
    await client.set_cursor(stream_name, 0, "b", 30)
    assert [
        await client.get_cursor(stream_name, 0, "a"),
        await client.get_cursor(stream_name, 1, "a"),
        await client.get_cursor(stream_name, 0, "b"),
        await client.get_cursor(f"{stream_name}-other", 0, "a"),
    ] == [11, 21, 31, -1]


async def test_last_processed_convention_stores_the_offset_as_given(
    broker: str, stream: str
) -> None:
    async with LiftbridgeClient(
        [broker], cursor_convention=CursorConvention.LAST_PROCESSED
    ) as client:
        await client.set_cursor(stream, 0, "go-style", 4)
        assert await client.get_cursor(stream, 0, "go-style") == 4


async def test_resume_starts_at_the_message_after_the_processed_one(
    client: LiftbridgeClient, five_messages: str
) -> None:
    await client.set_cursor(five_messages, 0, "reader", 2)
    assert await resumed_offsets(client, five_messages, "reader") == [3, 4]


async def test_resume_with_last_processed_convention_starts_after_the_cursor(
    broker: str, five_messages: str
) -> None:
    async with LiftbridgeClient(
        [broker], cursor_convention=CursorConvention.LAST_PROCESSED
    ) as client:
        await client.set_cursor(five_messages, 0, "go-style", 2)
        assert await resumed_offsets(client, five_messages, "go-style") == [3, 4]


async def test_both_conventions_resume_at_the_same_place_from_their_own_cursors(
    broker: str, five_messages: str
) -> None:
    async with (
        LiftbridgeClient([broker]) as gufo_style,
        LiftbridgeClient([broker], cursor_convention=CursorConvention.LAST_PROCESSED) as go_style,
    ):
        await gufo_style.set_cursor(five_messages, 0, "gufo", 1)
        await go_style.set_cursor(five_messages, 0, "go", 1)
        assert await resumed_offsets(gufo_style, five_messages, "gufo") == [2, 3, 4]
        assert await resumed_offsets(go_style, five_messages, "go") == [2, 3, 4]


async def test_resume_without_stored_cursor_starts_at_the_first_message(
    client: LiftbridgeClient, five_messages: str
) -> None:
    assert await resumed_offsets(client, five_messages, "fresh") == [0, 1, 2, 3, 4]


async def test_empty_cursor_id_raises_value_error(client: LiftbridgeClient, stream: str) -> None:
    with pytest.raises(ValueError, match="cursor_id"):
        await client.set_cursor(stream, 0, "", 1)
    with pytest.raises(ValueError, match="cursor_id"):
        await client.get_cursor(stream, 0, "")


async def test_negative_cursor_offset_raises_value_error_and_keeps_the_cursor(
    client: LiftbridgeClient, stream: str
) -> None:
    await client.set_cursor(stream, 0, "reader", 3)
    with pytest.raises(ValueError, match="negative"):
        await client.set_cursor(stream, 0, "reader", -1)
    assert await client.get_cursor(stream, 0, "reader") == 4


# -- several cursor partitions ----------------------------------------------


@pytest.fixture(scope="module")
def cursor_server() -> Iterator[LiftbridgeServer]:
    """A server whose __cursors stream has three partitions."""
    with LiftbridgeServer(cursors_partitions=CURSOR_PARTITIONS) as server:
        yield server


@pytest.fixture
async def cursor_client(cursor_server: LiftbridgeServer) -> AsyncIterator[LiftbridgeClient]:
    async with LiftbridgeClient([cursor_server.broker]) as client:
        await client.wait_for_cursors()
        yield client


def cursors_partition(cursor_id: str, stream: str, partition: int) -> int:
    """Liftbridge's rule, written out independently of lbwire's."""
    return zlib.crc32(f"{cursor_id},{stream},{partition}".encode()) % CURSOR_PARTITIONS


async def test_cursor_stream_has_the_configured_partitions(
    cursor_client: LiftbridgeClient,
) -> None:
    (meta,) = (await cursor_client.get_metadata(CURSOR_STREAM)).metadata
    assert sorted(meta.partitions) == list(range(CURSOR_PARTITIONS))


async def test_many_cursors_are_stored_on_their_crc32_cursor_partitions(
    cursor_client: LiftbridgeClient, stream_name: str
) -> None:
    ids = [f"reader-{i}" for i in range(24)]
    expected = {i: cursors_partition(i, stream_name, 0) for i in ids}
    assert set(expected.values()) == set(range(CURSOR_PARTITIONS))
    for n, cursor_id in enumerate(ids):
        await cursor_client.set_cursor(stream_name, 0, cursor_id, n)
    for n, cursor_id in enumerate(ids):
        assert await cursor_client.get_cursor(stream_name, 0, cursor_id) == n + 1
    for partition in range(CURSOR_PARTITIONS):
        keys = {m.key for m in await read_all(cursor_client, CURSOR_STREAM, partition)}
        mine = {k.decode().split(",")[0] for k in keys if f",{stream_name},".encode() in k}
        assert mine == {i for i, p in expected.items() if p == partition}


async def test_resume_works_with_several_cursor_partitions(
    cursor_client: LiftbridgeClient, stream_name: str
) -> None:
    await cursor_client.create_stream(stream_name, wait_for_stream=True)
    await publish_values(cursor_client, stream_name, [b"%d" % i for i in range(6)])
    ids = [f"resumer-{i}" for i in range(6)]
    assert len({cursors_partition(i, stream_name, 0) for i in ids}) > 1
    for n, cursor_id in enumerate(ids):
        await cursor_client.set_cursor(stream_name, 0, cursor_id, n)
    for n, cursor_id in enumerate(ids):
        assert await resumed_offsets(cursor_client, stream_name, cursor_id) == list(range(n + 1, 6))


async def test_missing_cursor_reads_as_minus_one_on_every_cursor_partition(
    cursor_client: LiftbridgeClient, stream_name: str
) -> None:
    # Ids on every cursors partition (which ones depends on the stream's name,
    # which depends on the tests run before: pick them, do not assume them).
    ids: list[str] = []
    for n in range(1000):
        cursor_id = f"absent-{n}"
        if cursors_partition(cursor_id, stream_name, 0) not in {
            cursors_partition(i, stream_name, 0) for i in ids
        }:
            ids.append(cursor_id)
    assert {cursors_partition(i, stream_name, 0) for i in ids} == set(range(CURSOR_PARTITIONS))
    assert [await cursor_client.get_cursor(stream_name, 0, i) for i in ids] == [-1] * len(ids)


async def test_a_store_overlapping_a_load_of_the_same_cursor_is_kept(
    client: LiftbridgeClient, stream: str
) -> None:
    # The server answers a fetch its cache misses from the log and caches
    # what it read afterwards: a store landing in between was overwritten
    # in its cache (a consumer's commit racing its partition start did
    # this). The client runs its calls on one cursor one after the other.
    # Many cursor records make each cache-missing fetch read for a while.
    await client.wait_for_cursors()
    for i in range(200):
        await client.cursor_store.store(stream, 0, f"filler-{i}", i)
    ids = [f"overlap-{i}" for i in range(40)]
    loaded: dict[str, int] = {}

    async def load(cursor_id: str) -> None:
        loaded[cursor_id] = await client.cursor_store.load(stream, 0, cursor_id)

    async with anyio.create_task_group() as tasks:
        for i, cursor_id in enumerate(ids):
            tasks.start_soon(load, cursor_id)
            tasks.start_soon(client.cursor_store.store, stream, 0, cursor_id, i)
    # Each load ran before or after its store, never into it.
    assert all(loaded[c] in (-1, i) for i, c in enumerate(ids)), loaded
    assert [await client.cursor_store.load(stream, 0, c) for c in ids] == list(range(40))
