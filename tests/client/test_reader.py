"""The whole-stream reader: merging, commits, positions, lag, batches, and how it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from helpers import HANG_GUARD, wait_until

from lbwire.client import LiftbridgeClient
from lbwire.error import (
    ErrorInvalidArgument,
    ErrorInvalidPartition,
    ErrorTaskFailed,
    LiftbridgeError,
)
from lbwire.reader import StreamReader, batched, stream_lag
from lbwire.types import Message, StartPosition

pytestmark = pytest.mark.anyio

PARTITIONS = 3


@pytest.fixture
async def three(client: LiftbridgeClient, stream_name: str) -> str:
    """A three-partition stream with messages "p-i", i < 4, in each partition."""
    await client.create_stream(stream_name, partitions=PARTITIONS, wait_for_stream=True)
    for partition in range(PARTITIONS):
        for i in range(4):
            await client.publish(
                f"{partition}-{i}".encode(), stream=stream_name, partition=partition
            )
    return stream_name


async def take(reader: StreamReader, count: int) -> list[Message]:
    out = []
    with anyio.fail_after(HANG_GUARD):
        while len(out) < count:
            out.append(await reader.__anext__())
    return out


def by_partition(messages: list[Message]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for msg in messages:
        out.setdefault(msg.partition, []).append(msg.offset)
    return out


async def test_reads_every_partition_in_order(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three) as reader:
        assert reader.partitions == [0, 1, 2]
        got = await take(reader, 12)
    assert by_partition(got) == {p: [0, 1, 2, 3] for p in range(PARTITIONS)}
    assert {m.value for m in got if m.partition == 1} == {b"1-0", b"1-1", b"1-2", b"1-3"}


async def test_a_chosen_partition_set(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, [2]) as reader:
        got = await take(reader, 4)
        assert reader.position() == {2: 4}
    assert by_partition(got) == {2: [0, 1, 2, 3]}


async def test_stops_apply_per_partition_and_end_the_iteration(
    client: LiftbridgeClient, three: str
) -> None:
    with anyio.fail_after(HANG_GUARD):
        async with client.reader(three, stop_offset=1) as reader:
            got = [m async for m in reader]
    assert by_partition(got) == {p: [0, 1] for p in range(PARTITIONS)}


async def test_resumes_each_partition_from_its_cursor(client: LiftbridgeClient, three: str) -> None:
    await client.set_cursor(three, 0, "c", 1)  # processed 0..1
    await client.set_cursor(three, 2, "c", 3)  # processed all
    async with client.reader(three, cursor_id="c", auto_commit=False) as reader:
        assert reader.committed() == {0: 2, 1: None, 2: 4}
        assert reader.position() == {0: 2, 1: None, 2: 4}
        got = await take(reader, 6)
        assert await reader.lag() == {0: 2, 1: 4, 2: 0}
    assert by_partition(got) == {0: [2, 3], 1: [0, 1, 2, 3]}


async def test_commit_covers_only_messages_asked_past(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, [0], cursor_id="c", auto_commit=False) as reader:
        await take(reader, 2)  # offset 1 is in hand, not processed
        await reader.commit()
        assert reader.committed() == {0: 1}
        assert await client.get_cursor(three, 0, "c") == 1  # NEXT: offset 0 processed
        assert await reader.lag() == {0: 3}


async def test_commit_offsets(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, cursor_id="c", auto_commit=False) as reader:
        await reader.commit({1: 3})
        assert reader.committed() == {0: None, 1: 3, 2: None}
        with pytest.raises(ErrorInvalidPartition):
            await reader.commit({7: 1})
        with pytest.raises(ErrorInvalidArgument):
            await reader.commit({1: -1})
    assert await client.get_cursor(three, 1, "c") == 3


async def test_commit_needs_a_cursor_id(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three) as reader:
        with pytest.raises(ErrorInvalidArgument, match="cursor_id"):
            await reader.commit()


async def test_auto_commit_every_n_messages(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(
        three, [0], cursor_id="c", commit_every=2, commit_interval=None
    ) as reader:
        await take(reader, 3)  # 0 and 1 processed: committed before 2 is handed out
        assert reader.committed() == {0: 2}
        assert await client.get_cursor(three, 0, "c") == 2


async def test_auto_commit_every_interval(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, [0], cursor_id="c", commit_interval=0.05) as reader:
        await take(reader, 2)
        await wait_until(lambda: reader.committed() == {0: 1}, "the timer committed")


async def test_leaving_the_block_commits_the_message_in_hand(
    client: LiftbridgeClient, three: str
) -> None:
    async with client.reader(three, [0], cursor_id="c", commit_interval=None) as reader:
        async for msg in reader:
            if msg.offset == 1:
                break
    assert await client.get_cursor(three, 0, "c") == 2


async def test_an_exception_leaves_the_message_in_hand_uncommitted(
    client: LiftbridgeClient, three: str
) -> None:
    async def process() -> None:
        async with client.reader(three, [0], cursor_id="c", commit_interval=None) as reader:
            async for msg in reader:
                if msg.offset == 1:
                    raise KeyError("failed processing")

    with pytest.raises(KeyError):
        await process()
    assert await client.get_cursor(three, 0, "c") == 1


async def test_cancellation_ends_the_reader(client: LiftbridgeClient, three: str) -> None:
    with anyio.move_on_after(HANG_GUARD) as guard:
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                async with client.reader(three, cursor_id="c", commit_interval=None) as reader:
                    async for _ in reader:
                        tg.cancel_scope.cancel()
                        await anyio.sleep_forever()  # cancelled while processing it

            tg.start_soon(read)
    assert not guard.cancelled_caught
    # The message in hand when cancelled was not processed: nothing committed.
    assert [await client.get_cursor(three, p, "c") for p in range(PARTITIONS)] == [-1] * 3


async def test_seek(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, [1]) as reader:
        await take(reader, 4)
        reader.seek(1, 1)
        assert reader.position() == {1: 1}
        got = await take(reader, 3)
    assert [m.offset for m in got] == [1, 2, 3]


async def test_pause_and_resume(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, [0, 1]) as reader:
        reader.pause(0)
        assert reader.paused() == [0]
        got = await take(reader, 4)
        assert by_partition(got) == {1: [0, 1, 2, 3]}
        reader.resume(0)
        got = await take(reader, 4)
    assert by_partition(got) == {0: [0, 1, 2, 3]}


async def test_highwater_and_lag(client: LiftbridgeClient, three: str) -> None:
    await client.publish(b"more", stream=three, partition=2)
    async with client.reader(three, cursor_id="c") as reader:
        assert await reader.highwater() == {0: 3, 1: 3, 2: 4}
        assert await reader.lag() == {0: 4, 1: 4, 2: 5}
    rows = await stream_lag(client, three, "c")
    assert [(r.partition, r.high_watermark, r.committed, r.lag) for r in rows] == [
        (0, 3, None, 4),
        (1, 3, None, 4),
        (2, 4, None, 5),
    ]


async def test_lag_follows_the_cursor_convention(broker: str, three: str) -> None:
    from lbwire.types import CursorConvention

    async with LiftbridgeClient(
        [broker], cursor_convention=CursorConvention.LAST_PROCESSED
    ) as client:
        await client.set_cursor(three, 0, "last", 1)
        assert await client.get_cursor(three, 0, "last") == 1
        async with client.reader(three, [0], cursor_id="last", auto_commit=False) as reader:
            assert reader.committed() == {0: 2}
            assert await reader.lag() == {0: 2}
            assert [m.offset for m in await take(reader, 2)] == [2, 3]


async def test_a_failing_partition_surfaces_as_a_liftbridge_error(
    client: LiftbridgeClient, three: str
) -> None:
    async with client.reader(three, [0, 9]) as reader:  # no partition 9
        with pytest.raises(LiftbridgeError), anyio.fail_after(HANG_GUARD):
            async for _ in reader:
                pass


class _Halt(BaseException):
    """A program's own BaseException (as SystemExit is one): it ends a reader."""


def halt_at(stop: bytes) -> Callable[[bytes], bytes]:
    """A value deserializer that raises _Halt at the value `stop`."""

    def deserialize(value: bytes) -> bytes:
        if value == stop:
            raise _Halt(f"halt at {value!r}")
        return value

    return deserialize


async def test_a_deserializer_raising_a_base_exception_ends_the_reader_with_it(
    client: LiftbridgeClient, three: str
) -> None:
    # Not an ExceptionGroup of the reader's task group: the deserializer's own
    # exception, as `except` around the block expects it.
    async def read() -> None:
        async with client.reader(three, value_deserializer=halt_at(b"1-2")) as reader:
            async for _ in reader:  # cancelled when partition 1's task fails
                pass

    with anyio.fail_after(HANG_GUARD), pytest.raises(_Halt, match="halt at b'1-2'") as caught:
        await read()
    assert type(caught.value) is _Halt
    # The client goes on: a new reader reads the whole stream.
    async with client.reader(three) as reader:
        assert len(await take(reader, 12)) == 12


async def test_a_reader_task_failing_with_a_bug_raises_error_task_failed(
    client: LiftbridgeClient, three: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seam: no real failure of lbwire's own is known to reach a reader's
    # task as anything but a LiftbridgeError, so a bug is planted where
    # partition 1's task reads its (real) subscription.
    bug = RuntimeError("a bug")
    fill = StreamReader._fill  # noqa: SLF001 (the seam)

    async def broken(self: StreamReader, state: Any, messages: Any) -> None:
        if state.partition == 1:
            raise bug
        await fill(self, state, messages)

    monkeypatch.setattr(StreamReader, "_fill", broken)

    async def read() -> None:
        async with client.reader(three, cursor_id="c") as reader:
            async for _ in reader:
                pass

    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorTaskFailed) as caught:
        await read()
    assert isinstance(caught.value, LiftbridgeError)
    assert str(caught.value) == (
        f"Reading partition 1 for the reader of {three!r} (cursor 'c') failed: RuntimeError: a bug"
    )
    assert caught.value.__cause__ is bug
    monkeypatch.undo()
    async with client.reader(three) as reader:
        assert len(await take(reader, 12)) == 12


async def test_a_missing_stream(client: LiftbridgeClient, stream_name: str) -> None:
    from lbwire.error import ErrorNotFound

    with pytest.raises(ErrorNotFound):
        async with client.reader(stream_name):
            pass


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"partitions": []}, "partitions must not be empty"),
        ({"partitions": [-1]}, "must not be negative"),
        ({"start_position": StartPosition.RESUME}, "start_position must be"),
        ({"max_buffered": 0}, "max_buffered"),
        ({"commit_every": 0}, "commit_every"),
        ({"commit_interval": 0}, "commit_interval"),
    ],
)
async def test_bad_arguments(
    client: LiftbridgeClient, kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        client.reader("s", **kwargs)  # type: ignore[arg-type]


async def test_backpressure_per_partition(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, max_buffered=1) as reader:
        got = await take(reader, 12)
    assert by_partition(got) == {p: [0, 1, 2, 3] for p in range(PARTITIONS)}


# -- batches ----------------------------------------------------------------


async def test_batches_hold_at_most_max_count(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three, stop_offset=3) as reader:
        with anyio.fail_after(HANG_GUARD):
            batches = [b async for b in reader.batches(5, 0.05)]
    assert all(1 <= len(b) <= 5 for b in batches)
    assert by_partition([m for b in batches for m in b]) == {p: [0, 1, 2, 3] for p in range(3)}


async def test_a_batch_waits_at_most_max_wait_once_a_message_is_there(
    client: LiftbridgeClient, three: str
) -> None:
    async with client.reader(three, [0]) as reader:
        batches = reader.batches(100, 0.05)
        with anyio.fail_after(HANG_GUARD):
            first = await batches.__anext__()
            while sum(1 for _ in first) < 4:
                first += await batches.__anext__()
            # Nothing more comes: the next batch waits for a first message,
            # with no bound; with one there it comes within max_wait.
            async with anyio.create_task_group() as tg:

                async def publish_later() -> None:
                    await client.publish(b"late", stream=three, partition=0)

                tg.start_soon(publish_later)
                late = await batches.__anext__()
    assert [m.value for m in late] == [b"late"]


async def test_batches_commit_when_the_next_is_asked_for(
    client: LiftbridgeClient, three: str
) -> None:
    async with client.reader(three, [0], cursor_id="c", auto_commit=False) as reader:
        batches = reader.batches(2, 0)
        with anyio.fail_after(HANG_GUARD):
            await batches.__anext__()
            await reader.commit()
            assert reader.committed() == {0: None}
            await batches.__anext__()
            await reader.commit()
            assert reader.committed()[0] is not None


async def test_batches_bad_arguments(client: LiftbridgeClient, three: str) -> None:
    async with client.reader(three) as reader:
        with pytest.raises(ValueError, match="max_count"):
            reader.batches(0, 1)
        with pytest.raises(ValueError, match="max_wait"):
            reader.batches(1, -1)


# -- batches of a single subscription ------------------------------------------


async def test_batched_subscription_holds_at_most_max_count(
    client: LiftbridgeClient, three: str
) -> None:
    subscription = client.subscribe(
        three, partition=1, start_position=StartPosition.EARLIEST, stop_offset=3
    )
    with anyio.fail_after(HANG_GUARD):
        async with batched(subscription, 3, 0.05) as batches:
            got = [batch async for batch in batches]
    assert [m.offset for b in got for m in b] == [0, 1, 2, 3]
    assert all(1 <= len(b) <= 3 for b in got)


async def test_batched_subscription_waits_at_most_max_wait_once_a_message_is_there(
    client: LiftbridgeClient, three: str
) -> None:
    subscription = client.subscribe(three, partition=0, start_position=StartPosition.EARLIEST)
    with anyio.fail_after(HANG_GUARD):
        async with batched(subscription, 100, 0.05) as batches:
            seen = 0
            while seen < 4:  # max_count is never reached: each batch ends at max_wait
                seen += len(await batches.__anext__())
            assert seen == 4


async def test_batched_subscription_raises_its_error(client: LiftbridgeClient, three: str) -> None:
    from lbwire.error import ErrorNotFound

    async def read() -> None:
        async with batched(client.subscribe(three, partition=9), 10, 0) as batches:
            async for _ in batches:
                pass

    with pytest.raises(ErrorNotFound), anyio.fail_after(HANG_GUARD):
        await read()


async def test_batched_deserializer_raising_a_base_exception_comes_out_as_itself(
    client: LiftbridgeClient, three: str
) -> None:
    subscription = client.subscribe(
        three,
        partition=0,
        start_position=StartPosition.EARLIEST,
        value_deserializer=halt_at(b"0-1"),
    )

    async def read() -> None:
        async with batched(subscription, 10, 0) as batches:
            async for _ in batches:
                pass

    with anyio.fail_after(HANG_GUARD), pytest.raises(_Halt, match="halt at b'0-1'") as caught:
        await read()
    assert type(caught.value) is _Halt


async def test_batched_bad_arguments(client: LiftbridgeClient) -> None:
    with pytest.raises(ValueError, match="max_count"):
        batched(client.subscribe("s"), 0, 1)
