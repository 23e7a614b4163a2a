"""lbwire and gufo-liftbridge 0.2.0 side by side on one real server.

A deployment migrates one process at a time, so both clients must agree on
what is stored: cursors written by one resume in the other at exactly the
first unprocessed message; compressed messages published by one are
decompressed by the other (encoding header removed); keys, headers and values
survive either way; metadata reads the same.

gufo-liftbridge runs on grpcio's asyncio only, so these tests run on asyncio.
gufo's client retries forever, so every test body runs under a deadline.
The server has four cursor partitions, and the cursor ids are chosen so that
their records do not live in `__cursors` partition 0 (gufo always asks
partition 0's leader; lbwire hashes as the server does).
"""

from __future__ import annotations

import dataclasses
import lzma
import zlib
from typing import Any, Dict, Iterator, List

import anyio
import pytest

pytest.importorskip("gufo.liftbridge.client")
from gufo.liftbridge.client import LiftbridgeClient as GufoClient
from gufo.liftbridge.error import LiftbridgeError as GufoError
from gufo.liftbridge.types import StartPosition as GufoStart
from helpers import aclosing

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound, LiftbridgeError
from lbwire.partitioning import cursor_partition
from lbwire.testing import LiftbridgeServer
from lbwire.types import Ack, StartPosition

pytestmark = [pytest.mark.server, pytest.mark.anyio]

#: Seconds any one test may take (gufo's client would otherwise retry forever).
DEADLINE = 30
CURSOR_PARTITIONS = 4
ENCODING_HEADER = "X-Msg-Encoding"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """gufo-liftbridge is asyncio-only (grpc.aio).

    One event loop for the whole module: grpc.aio binds its completion-queue
    poller to a loop, and a loop per test makes it post callbacks to closed
    loops ("Event loop is closed").
    """
    return "asyncio"


# gufo-liftbridge 0.2.0's publish_bulk(wait=True) races: it counts the acks
# down and sets a completion event that it creates only after the last request
# was taken; when the last ack arrives first, nothing sets the event, it waits
# publish_async_ack_timeout (10 s) and the call ends in CancelledError. So its
# bulk publishing here uses wait=False, which half-closes the call after the
# last request. The server then waits until no ack is in flight and ends the
# call, but its ack handler counts an ack as delivered before it sends it
# (dispatchAcks and waitForInflight in Liftbridge v1.9.0 server/api.go): the
# last acks can be lost. What gufo guarantees is that every message is
# published and every ack it yields is a distinct one of them; the tests check
# that, and read the messages back.
GUFO_BULK_WAIT = False


@pytest.fixture(scope="module")
def server() -> Iterator[LiftbridgeServer]:
    with LiftbridgeServer(cursors_partitions=CURSOR_PARTITIONS) as server:
        yield server


def assert_acks_among(responses: List[Any], stream: str, offsets: range) -> None:
    """gufo's publish_bulk acks: distinct, of the stream, among the offsets published."""
    acked = [r.ack.offset for r in responses]
    assert len(set(acked)) == len(acked), acked
    assert set(acked) <= set(offsets), acked
    assert all(r.ack.stream == stream for r in responses)


async def read_messages(client: Any, stream: str, count: int, **kwargs: Any) -> List[Any]:
    """The first `count` messages of a partition (from EARLIEST unless told)."""
    kwargs.setdefault("partition", 0)
    kwargs.setdefault("start_position", StartPosition.EARLIEST)
    got: List[Any] = []
    if count == 0:
        return got
    async with aclosing(client.subscribe(stream, **kwargs)) as messages:
        async for msg in messages:
            got.append(msg)
            if len(got) == count:
                break
    return got


async def process_with_cursor(
    client: Any, stream: str, cursor_id: str, until_offset: int
) -> List[int]:
    """Subscribe with RESUME and record each message as processed, up to an offset.

    Returns the offsets processed, in order.
    """
    done: List[int] = []
    async with aclosing(
        client.subscribe(
            stream, partition=0, start_position=StartPosition.RESUME, cursor_id=cursor_id
        )
    ) as messages:
        async for msg in messages:
            done.append(msg.offset)
            await client.set_cursor(stream, partition=0, cursor_id=cursor_id, offset=msg.offset)
            if msg.offset >= until_offset:
                break
    return done


def off_partition_zero(stream: str, prefix: str) -> str:
    """A cursor id whose record is stored outside `__cursors` partition 0."""
    for n in range(1000):
        cursor_id = f"{prefix}-{n}"
        if cursor_partition(cursor_id, stream, 0, CURSOR_PARTITIONS) != 0:
            return cursor_id
    raise AssertionError("no such cursor id")  # pragma: no cover


async def create(server: LiftbridgeServer, stream: str, partitions: int = 1) -> None:
    async with LiftbridgeClient([server.broker]) as client:
        await client.create_stream(stream, partitions=partitions, wait_for_stream=True)
        await client.wait_for_cursors()


def gufo_fields(msg: Any) -> Dict[str, Any]:
    """A message as gufo's Message fields (the first seven of lbwire's)."""
    names = ("value", "subject", "offset", "timestamp", "key", "partition", "headers")
    return {name: getattr(msg, name) for name in names}


# --------------------------------------------------------------------------
# Cursors


async def test_cursor_written_by_gufo_resumes_in_lbwire_and_back(
    server: LiftbridgeServer, stream_name: str
) -> None:
    cursor_id = off_partition_zero(stream_name, "gufo-first")
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with LiftbridgeClient([server.broker]) as lb, GufoClient([server.broker]) as gufo:
            for i in range(10):
                await lb.publish(f"m{i}".encode(), stream=stream_name)
            assert await gufo.get_cursor(stream_name, 0, cursor_id) == -1
            assert await lb.get_cursor(stream_name, 0, cursor_id) == -1

            # gufo processes 0..3 and stops.
            assert await process_with_cursor(gufo, stream_name, cursor_id, 3) == [0, 1, 2, 3]
            assert await gufo.get_cursor(stream_name, 0, cursor_id) == 4
            assert await lb.get_cursor(stream_name, 0, cursor_id) == 4

            # lbwire takes over at exactly the first unprocessed message.
            assert await process_with_cursor(lb, stream_name, cursor_id, 7) == [4, 5, 6, 7]
            assert await lb.get_cursor(stream_name, 0, cursor_id) == 8
            assert await gufo.get_cursor(stream_name, 0, cursor_id) == 8

            # And gufo takes over again where lbwire stopped.
            assert await process_with_cursor(gufo, stream_name, cursor_id, 9) == [8, 9]
            assert await lb.get_cursor(stream_name, 0, cursor_id) == 10


async def test_cursor_written_by_lbwire_resumes_in_gufo_and_back(
    server: LiftbridgeServer, stream_name: str
) -> None:
    cursor_id = off_partition_zero(stream_name, "lbwire-first")
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with LiftbridgeClient([server.broker]) as lb, GufoClient([server.broker]) as gufo:
            for i in range(8):
                await lb.publish(f"m{i}".encode(), stream=stream_name)
            assert await process_with_cursor(lb, stream_name, cursor_id, 2) == [0, 1, 2]
            assert await gufo.get_cursor(stream_name, 0, cursor_id) == 3
            assert await process_with_cursor(gufo, stream_name, cursor_id, 5) == [3, 4, 5]
            assert await process_with_cursor(lb, stream_name, cursor_id, 7) == [6, 7]
            # Both resume after the last message once more arrive.
            await lb.publish(b"m8", stream=stream_name)
            assert await process_with_cursor(gufo, stream_name, cursor_id, 8) == [8]


async def test_set_cursor_by_hand_is_read_the_same(
    server: LiftbridgeServer, stream_name: str
) -> None:
    """set_cursor(offset=i) stores i+1 in both (gufo's convention), read back by both."""
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name, partitions=3)
        async with LiftbridgeClient([server.broker]) as lb, GufoClient([server.broker]) as gufo:
            for partition in range(3):
                cursor_id = f"by-hand-{partition}"
                await gufo.set_cursor(stream_name, partition, cursor_id, 40 + partition)
                assert await lb.get_cursor(stream_name, partition, cursor_id) == 41 + partition
                await lb.set_cursor(stream_name, partition, cursor_id, 50 + partition)
                assert await gufo.get_cursor(stream_name, partition, cursor_id) == 51 + partition


# --------------------------------------------------------------------------
# Compression

COMPRESSION_CASES = [
    ("zlib", ENCODING_HEADER),
    ("lzma", ENCODING_HEADER),
    ("zlib", "X-Compression"),
]
THRESHOLD = 32
PAYLOADS = [
    b"short",  # below the threshold: sent as is
    b"a long value that compresses well " * 10,
    bytes(range(256)) * 4,
    b"x" * THRESHOLD,  # exactly at the threshold: compressed
]


def _decompress(method: str, value: bytes) -> bytes:
    return zlib.decompress(value) if method == "zlib" else lzma.decompress(value)


def check_decoded(messages: List[Any], header: str) -> None:
    assert [m.value for m in messages] == PAYLOADS
    for msg in messages:
        assert header not in msg.headers, msg.headers
        assert msg.headers["app"] == b"kept"
        assert msg.key == b"the-key"


def check_raw(messages: List[Any], method: str, header: str) -> None:
    """What was on the wire: compressed, and named in the header, at the threshold and above."""
    for msg, original in zip(messages, PAYLOADS):
        if len(original) >= THRESHOLD:
            assert msg.headers[header] == method.encode()
            assert msg.value != original
            assert _decompress(method, msg.value) == original
        else:
            assert header not in msg.headers
            assert msg.value == original


@pytest.mark.parametrize(("method", "header"), COMPRESSION_CASES)
async def test_compressed_by_gufo_is_decompressed_by_lbwire(
    server: LiftbridgeServer, stream_name: str, method: str, header: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        options: Dict[str, Any] = dict(
            compression_method=method, compression_threshold=THRESHOLD, encoding_header=header
        )
        async with GufoClient([server.broker], **options) as gufo:
            for value in PAYLOADS:
                await gufo.publish(
                    value,
                    stream=stream_name,
                    key=b"the-key",
                    headers={"app": b"kept"},
                    auto_compress=True,
                )
        async with LiftbridgeClient([server.broker], encoding_header=header) as lb:
            check_decoded(await read_messages(lb, stream_name, len(PAYLOADS)), header)
        async with LiftbridgeClient([server.broker], encoding_header="X-Unused") as raw:
            check_raw(await read_messages(raw, stream_name, len(PAYLOADS)), method, header)


@pytest.mark.parametrize(("method", "header"), COMPRESSION_CASES)
async def test_compressed_by_lbwire_is_decompressed_by_gufo(
    server: LiftbridgeServer, stream_name: str, method: str, header: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        options: Dict[str, Any] = dict(
            compression_method=method, compression_threshold=THRESHOLD, encoding_header=header
        )
        async with LiftbridgeClient([server.broker], **options) as lb:
            for value in PAYLOADS:
                await lb.publish(
                    value,
                    stream=stream_name,
                    key=b"the-key",
                    headers={"app": b"kept"},
                    auto_compress=True,
                )
        async with GufoClient([server.broker], encoding_header=header) as gufo:
            check_decoded(await read_messages(gufo, stream_name, len(PAYLOADS)), header)
        async with GufoClient([server.broker], encoding_header="X-Unused") as raw:
            check_raw(await read_messages(raw, stream_name, len(PAYLOADS)), method, header)


# --------------------------------------------------------------------------
# Plain messages: keys, headers, partitions


SAMPLES = [
    (b"", b"", {}),
    (b"plain", b"k1", {"a": b"1"}),
    (bytes(range(256)), b"\x00\xff", {"bin": bytes(range(256)), "empty": b""}),
    ("unicodé ✓".encode(), "clé".encode(), {"x-trace-id": b"abc", "h2": b"v2"}),
]


async def _compare_readers(server: LiftbridgeServer, stream: str, partition: int) -> None:
    """Both clients read the same partition; gufo's fields agree exactly."""
    async with LiftbridgeClient([server.broker]) as lb, GufoClient([server.broker]) as gufo:
        mine = await read_messages(lb, stream, len(SAMPLES), partition=partition)
        theirs = await read_messages(
            gufo, stream, len(SAMPLES), partition=partition, start_position=GufoStart.EARLIEST
        )
    assert [gufo_fields(m) for m in mine] == [gufo_fields(m) for m in theirs]
    for msg, (value, key, headers) in zip(mine, SAMPLES):
        assert (msg.value, msg.key, msg.partition) == (value, key, partition)
        assert msg.headers.items() >= headers.items(), msg.headers
        # lbwire's additions are filled in too.
        assert msg.stream == stream


async def test_published_by_lbwire_read_by_gufo(server: LiftbridgeServer, stream_name: str) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name, partitions=2)
        async with LiftbridgeClient([server.broker]) as lb:
            for offset, (value, key, headers) in enumerate(SAMPLES):
                ack = await lb.publish(
                    value, stream=stream_name, partition=1, key=key, headers=headers
                )
                # lbwire returns the ack; gufo-liftbridge's publish returns None.
                assert isinstance(ack, Ack)
                assert (ack.stream, ack.msgSubject, ack.offset) == (
                    stream_name,
                    f"{stream_name}.1",
                    offset,
                )
        await _compare_readers(server, stream_name, 1)


async def test_published_by_gufo_read_by_lbwire(server: LiftbridgeServer, stream_name: str) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name, partitions=2)
        async with GufoClient([server.broker]) as gufo:
            for value, key, headers in SAMPLES:
                result = await gufo.publish(
                    value, stream=stream_name, partition=1, key=key, headers=headers
                )
                assert result is None
        await _compare_readers(server, stream_name, 1)


async def test_bulk_published_by_gufo_read_by_lbwire(
    server: LiftbridgeServer, stream_name: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with GufoClient([server.broker]) as gufo:
            batch = [
                gufo.get_publish_request(value, stream=stream_name, key=key, headers=headers)
                for value, key, headers in SAMPLES
            ]
            responses = [r async for r in gufo.publish_bulk(batch, wait=GUFO_BULK_WAIT)]
        assert_acks_among(responses, stream_name, range(len(SAMPLES)))
        await _compare_readers(server, stream_name, 0)


async def test_bulk_published_by_lbwire_read_by_gufo(
    server: LiftbridgeServer, stream_name: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with LiftbridgeClient([server.broker]) as lb:
            batch = [
                lb.get_publish_request(value, stream=stream_name, key=key, headers=headers)
                for value, key, headers in SAMPLES
            ]
            responses = [r async for r in lb.publish_bulk(batch, wait=True)]
        assert sorted(r.ack.offset for r in responses) == list(range(len(SAMPLES)))
        await _compare_readers(server, stream_name, 0)


async def test_publish_bulk_items_look_like_gufos(
    server: LiftbridgeServer, stream_name: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with GufoClient([server.broker]) as gufo:
            batch = [gufo.get_publish_request(b"g", stream=stream_name) for _ in range(3)]
            theirs = [r async for r in gufo.publish_bulk(batch, wait=GUFO_BULK_WAIT)]
        async with LiftbridgeClient([server.broker]) as lb:
            batch = [lb.get_publish_request(b"l", stream=stream_name) for _ in range(3)]
            mine = [r async for r in lb.publish_bulk(batch, wait=True)]
        assert_acks_among(theirs, stream_name, range(3))
        # All three of gufo's messages were stored before lbwire's.
        assert sorted(r.ack.offset for r in mine) == [3, 4, 5]


async def test_publish_bulk_without_wait_still_yields_the_acks(
    server: LiftbridgeServer, stream_name: str
) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name)
        async with GufoClient([server.broker]) as gufo:
            batch = [gufo.get_publish_request(b"g", stream=stream_name) for _ in range(5)]
            theirs = [r async for r in gufo.publish_bulk(batch, wait=False)]
        assert len(theirs) == 5
        async with LiftbridgeClient([server.broker]) as lb:
            batch = [lb.get_publish_request(b"l", stream=stream_name) for _ in range(5)]
            mine = [r async for r in lb.publish_bulk(batch, wait=False)]
        assert len(mine) == 5


# --------------------------------------------------------------------------
# Metadata


def _metadata_view(meta: Any, stream: str) -> Dict[str, Any]:
    """gufo's fields of a Metadata, for one stream, as plain data."""
    streams = [s for s in meta.metadata if s.name == stream]
    return {
        "brokers": sorted((b.id, b.host, b.port) for b in meta.brokers),
        "streams": [
            {
                "name": s.name,
                "subject": s.subject,
                "partitions": {pid: _partition_view(p) for pid, p in s.partitions.items()},
            }
            for s in streams
        ],
    }


def _partition_view(p: Any) -> Dict[str, Any]:
    names = ("id", "leader", "replicas", "isr", "high_watermark", "newest_offset", "paused")
    return {name: getattr(p, name) for name in names}


async def test_metadata_reads_the_same(server: LiftbridgeServer, stream_name: str) -> None:
    with anyio.fail_after(DEADLINE):
        await create(server, stream_name, partitions=3)
        async with LiftbridgeClient([server.broker]) as lb, GufoClient([server.broker]) as gufo:
            for i in range(5):
                await lb.publish(b"x", stream=stream_name, partition=i % 3)
            mine = await lb.get_metadata(stream_name)
            theirs = await gufo.get_metadata(stream_name)
            assert _metadata_view(mine, stream_name) == _metadata_view(theirs, stream_name)
            assert len(_metadata_view(mine, stream_name)["streams"]) == 1
            for partition in range(3):
                p_mine = await lb.get_partition_metadata(stream_name, partition)
                p_theirs = await gufo.get_partition_metadata(stream_name, partition)
                assert _partition_view(p_mine) == _partition_view(p_theirs)
            assert dataclasses.is_dataclass(p_mine)


# --------------------------------------------------------------------------
# Documented differences


async def test_subscribing_to_a_stream_not_created_yet(
    server: LiftbridgeServer, stream_name: str
) -> None:
    """gufo waits (forever) for a missing stream; lbwire says it does not exist.

    So a gufo consumer started before its stream is created keeps waiting,
    while on lbwire it gets ErrorNotFound at once (and can wait_for_stream).
    """
    with anyio.fail_after(DEADLINE):
        async with LiftbridgeClient([server.broker]) as lb:
            with pytest.raises(ErrorNotFound):
                async for _ in lb.subscribe(stream_name):
                    pass  # pragma: no cover
        got: List[Any] = []
        async with GufoClient([server.broker]) as gufo, anyio.create_task_group() as tg:

            async def gufo_consumer() -> None:
                got.extend(
                    await read_messages(gufo, stream_name, 1, start_position=GufoStart.EARLIEST)
                )

            # Know when gufo has looked the stream's leader up (and found none).
            refreshed = anyio.Event()
            refresh = gufo._refresh_leaders  # noqa: SLF001 - gufo's internals, watched

            async def refresh_and_tell() -> None:
                await refresh()
                refreshed.set()

            gufo._refresh_leaders = refresh_and_tell  # type: ignore[method-assign]  # noqa: SLF001
            tg.start_soon(gufo_consumer)
            await refreshed.wait()
            assert (stream_name, 0) not in gufo.leaders  # gufo waits and polls again
            await create(server, stream_name)
            async with LiftbridgeClient([server.broker]) as lb:
                await lb.publish(b"late", stream=stream_name)
        assert [m.value for m in got] == [b"late"]


async def test_publish_without_a_stream_raises_a_liftbridge_error(
    server: LiftbridgeServer,
) -> None:
    with anyio.fail_after(DEADLINE):
        async with GufoClient([server.broker]) as gufo:
            with pytest.raises(GufoError):
                await gufo.publish(b"nowhere")
        async with LiftbridgeClient([server.broker]) as lb:
            with pytest.raises(LiftbridgeError):
                await lb.publish(b"nowhere")
