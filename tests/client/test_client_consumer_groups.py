"""Consumer groups against the real server: join, split, take over, commit, leave.

The module's server runs with short group timeouts (2 s) so that members poll
for assignments every 0.8 s and rebalancing is observed quickly; waits are on
conditions, bounded by generous guards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import anyio
import pytest
from helpers import HANG_GUARD, wait_until

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.consumer import AutoOffset, Consumer, GroupPartition
from lbwire.error import (
    ErrorAlreadyMember,
    ErrorGroupMembership,
    ErrorInternal,
    ErrorInvalidPartition,
    ErrorNotFound,
    ErrorNotMember,
    ErrorStaleEpoch,
    ErrorTaskFailed,
    LiftbridgeError,
)
from lbwire.testing import LiftbridgeServer


@pytest.fixture
async def client(group_server: LiftbridgeServer) -> AsyncIterator[LiftbridgeClient]:
    async with LiftbridgeClient([group_server.broker]) as client:
        yield client


async def make_stream(client: LiftbridgeClient, name: str, partitions: int, per: int) -> None:
    await client.create_stream(name, partitions=partitions, wait_for_stream=True)
    await client.wait_for_cursors()
    for p in range(partitions):
        for i in range(per):
            await client.publish(f"{p}-{i}".encode(), stream=name, partition=p)


async def take(consumer: Consumer, count: int) -> list[wire.Message]:
    out = []
    with anyio.fail_after(HANG_GUARD):
        async for msg in consumer:
            out.append(msg)
            if len(out) == count:
                break
    return out


@pytest.mark.anyio
async def test_single_member_is_assigned_every_partition(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 3, 0)
    async with client.consumer("g-" + stream_name, [stream_name]) as consumer:
        await consumer.wait_assigned()
        assert consumer.assignments == {stream_name: [0, 1, 2]}


@pytest.mark.anyio
async def test_member_reads_every_partition_from_earliest(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 5)
    async with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
    ) as consumer:
        messages = await take(consumer, 10)
    got = sorted((m.partition, m.offset) for m in messages)
    assert got == [(p, o) for p in range(2) for o in range(5)]


@pytest.mark.anyio
async def test_two_members_split_the_partitions(client: LiftbridgeClient, stream_name: str) -> None:
    await make_stream(client, stream_name, 4, 0)
    group = "g-" + stream_name
    async with client.consumer(group, [stream_name], consumer_id="a") as a:
        await a.wait_assigned()
        async with client.consumer(group, [stream_name], consumer_id="b") as b:
            await wait_until(
                lambda: (
                    len(a.assignments.get(stream_name, [])) == 2
                    and len(b.assignments.get(stream_name, [])) == 2
                ),
                "a 2/2 split",
            )
            assert sorted(a.assignments[stream_name] + b.assignments[stream_name]) == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_member_leaving_hands_its_partitions_over_with_committed_progress(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 10)
    group = "g-" + stream_name
    async with client.consumer(
        group, [stream_name], consumer_id="a", auto_offset=AutoOffset.EARLIEST
    ) as a:
        await a.wait_assigned()
        async with client.consumer(
            group,
            [stream_name],
            consumer_id="b",
            auto_offset=AutoOffset.EARLIEST,
            auto_checkpoint_interval=None,
        ) as b:
            await wait_until(lambda: len(b.assignments.get(stream_name, [])) == 1, "b assigned")
            (b_partition,) = b.assignments[stream_name]
            read_by_b = [m for m in await take(b, 4)]
            assert all(m.partition == b_partition for m in read_by_b)
            assert [m.offset for m in read_by_b] == [0, 1, 2, 3]
        # b committed offsets 0-3 on exit (the 4th was handed out, then b asked
        # for no more, so it counts as processed) and left the group.
        await wait_until(lambda: len(a.assignments.get(stream_name, [])) == 2, "a takes over")
        rest = await take(a, 10 + 6)
    from_b_partition = sorted(m.offset for m in rest if m.partition == b_partition)
    assert from_b_partition == list(range(4, 10)), "resumed after b's committed position"
    other = sorted(m.offset for m in rest if m.partition != b_partition)
    assert other == list(range(10))


@pytest.mark.anyio
async def test_committed_positions_are_go_style_group_cursors(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 3)
    group = "g-" + stream_name
    async with client.consumer(group, [stream_name], auto_offset=AutoOffset.EARLIEST) as c:
        await take(c, 3)
        await c.checkpoint()
    # go-liftbridge's convention: the last processed offset under __group:<id>.
    assert await client.cursor_store.load(stream_name, 0, f"__group:{group}") in (1, 2)


@pytest.mark.anyio
async def test_auto_offset_none_without_committed_position_raises_not_found(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 1)
    async with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.NONE
    ) as consumer:
        with anyio.fail_after(HANG_GUARD):
            with pytest.raises(ErrorNotFound, match="no committed position"):
                await consumer.__anext__()


@pytest.mark.anyio
async def test_new_member_starts_after_the_committed_position(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 6)
    group = "g-" + stream_name
    await client.cursor_store.store(stream_name, 0, f"__group:{group}", 2)
    async with client.consumer(group, [stream_name], auto_offset=AutoOffset.EARLIEST) as c:
        messages = await take(c, 3)
    assert [m.offset for m in messages] == [3, 4, 5]


@pytest.mark.anyio
async def test_raw_group_rpcs_join_fetch_and_leave(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 0)
    group = "g-" + stream_name
    joined = await client.join_consumer_group(group, "m1", [stream_name])
    assert joined.coordinator
    assert joined.consumerTimeout == 2_000_000_000
    assignments = await client.fetch_consumer_group_assignments(
        group, "m1", joined.epoch, coordinator=joined.coordinator
    )
    assert {(a.stream, tuple(sorted(a.partitions))) for a in assignments.assignments} == {
        (stream_name, (0, 1))
    }
    meta = await client.fetch_consumer_group_metadata(group)
    assert meta is not None
    assert meta.coordinator == joined.coordinator
    await client.leave_consumer_group(group, "m1")
    with pytest.raises(LiftbridgeError):
        await client.fetch_consumer_group_assignments(
            group, "m1", joined.epoch, coordinator=joined.coordinator
        )


@pytest.mark.anyio
async def test_a_left_member_is_told_it_is_not_a_member(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 0)
    group = "g-" + stream_name
    await client.join_consumer_group(group, "m1", [stream_name])
    joined = await client.join_consumer_group(group, "m2", [stream_name])
    await client.leave_consumer_group(group, "m1")
    refreshed = await client.fetch_consumer_group_metadata(group)
    assert refreshed is not None
    with pytest.raises(ErrorNotMember) as caught:
        await client.fetch_consumer_group_assignments(
            group, "m1", refreshed.epoch, coordinator=joined.coordinator
        )
    assert isinstance(caught.value, ErrorGroupMembership)
    await client.leave_consumer_group(group, "m2")


@pytest.mark.anyio
async def test_joining_twice_raises_already_member(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 0)
    group = "g-" + stream_name
    await client.join_consumer_group(group, "m1", [stream_name])
    with pytest.raises(ErrorAlreadyMember):
        await client.join_consumer_group(group, "m1", [stream_name])
    await client.leave_consumer_group(group, "m1")


class _UserError(Exception):
    """An error of the user's own code inside the consumer's block."""


@pytest.mark.anyio
async def test_error_raised_in_the_consumer_block_propagates_unwrapped(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # Not an ExceptionGroup: `except` around the block sees the error itself,
    # as around `async with LiftbridgeClient(...)`.
    await make_stream(client, stream_name, 1, 0)

    async def block() -> None:
        async with client.consumer("g-" + stream_name, [stream_name]) as consumer:
            await consumer.wait_assigned()
            raise _UserError("from the block")

    with pytest.raises(_UserError) as caught:
        await block()
    assert type(caught.value) is _UserError


@pytest.mark.anyio
async def test_a_member_whose_task_failed_closes_its_buffer(
    client: LiftbridgeClient, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A task's error comes out of the member's block on leaving: its buffer's
    # streams must be closed all the same, or the collector finds them open
    # (a ResourceWarning, an error in this suite). A CI run saw it after the
    # server failed a poll ("raft operation timed out"). The seam: no real
    # failure reaches the loop's task as a LiftbridgeError (the loop handles
    # every one), so the loop is replaced by one that fails.
    await make_stream(client, stream_name, 1, 0)

    async def failing_poll(self: Consumer) -> None:
        raise ErrorInternal("the poll failed")

    monkeypatch.setattr(Consumer, "_assignment_loop", failing_poll)
    member = client.consumer("g-" + stream_name, [stream_name])
    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorInternal, match="the poll failed"):
        async with member:
            await anyio.sleep_forever()
    buffer = member._receive, member._send  # noqa: SLF001 (what the collector would find)
    with pytest.raises(anyio.ClosedResourceError):
        buffer[0].receive_nowait()  # type: ignore[union-attr]
    with pytest.raises(anyio.ClosedResourceError):
        buffer[1].send_nowait(None)  # type: ignore[union-attr]


class _Halt(BaseException):
    """A program's own BaseException (as SystemExit is one): it ends a member."""


async def drain(member: Consumer) -> None:
    """Open the member and iterate it until it ends (or its block is cancelled)."""
    async with member:
        async for _ in member:
            pass


async def read_one(client: LiftbridgeClient, group: str, stream: str) -> wire.Message:
    """The first message a new member of `group` reads from the start of `stream`."""
    async with client.consumer(group, [stream], auto_offset=AutoOffset.EARLIEST) as member:
        return (await take(member, 1))[0]


@pytest.mark.anyio
async def test_a_callback_raising_a_base_exception_ends_the_member_with_it(
    client: LiftbridgeClient, stream_name: str
) -> None:
    # Not an ExceptionGroup of the member's task group: the callback's own
    # exception, as `except` around the block expects it.
    await make_stream(client, stream_name, 1, 1)
    group = "g-" + stream_name

    async def on_assigned(partitions: list[GroupPartition]) -> None:
        raise _Halt(f"stop at {partitions}")

    member = client.consumer(group, [stream_name], on_assigned=on_assigned)
    with anyio.fail_after(HANG_GUARD), pytest.raises(_Halt) as caught:
        await drain(member)  # cancelled when the callback's task fails
    assert type(caught.value) is _Halt
    assert str(caught.value) == f"stop at [GroupPartition(stream={stream_name!r}, partition=0)]"
    # The member left its group: a new one gets the partition and reads.
    assert (await read_one(client, group, stream_name)).value == b"0-0"


@pytest.mark.anyio
async def test_a_deserializer_raising_a_base_exception_ends_the_member_with_it(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 1)
    group = "g-" + stream_name

    def refuse(value: bytes) -> bytes:
        raise _Halt(f"refused {value!r}")

    with anyio.fail_after(HANG_GUARD), pytest.raises(_Halt, match="refused b'0-0'") as caught:
        async with client.consumer(
            group, [stream_name], auto_offset=AutoOffset.EARLIEST, value_deserializer=refuse
        ) as member:
            await take(member, 1)
    assert type(caught.value) is _Halt
    assert (await read_one(client, group, stream_name)).value == b"0-0"


@pytest.mark.anyio
async def test_a_member_task_failing_with_a_bug_raises_error_task_failed(
    client: LiftbridgeClient, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seam: no real failure of lbwire's own is known to reach a member's
    # task as anything but a LiftbridgeError, so a bug is planted where the
    # assignment loop applies the coordinator's (real) answer.
    await make_stream(client, stream_name, 1, 1)
    group = "g-" + stream_name
    bug = RuntimeError("a bug")

    async def broken(self: Consumer, assignments: object) -> None:
        raise bug

    monkeypatch.setattr(Consumer, "_reconcile", broken)
    member = client.consumer(group, [stream_name], consumer_id="m1")
    with anyio.fail_after(HANG_GUARD), pytest.raises(ErrorTaskFailed) as caught:
        await drain(member)
    assert isinstance(caught.value, LiftbridgeError)
    assert str(caught.value) == (
        f"The assignment loop of member m1 of group {group!r} (streams {stream_name!r}) "
        "failed: RuntimeError: a bug"
    )
    assert caught.value.__cause__ is bug
    monkeypatch.undo()
    # The client goes on: its calls, and a new member of the group that reads.
    assert (await client.publish(b"after", stream=stream_name)).offset == 1
    assert (await read_one(client, group, stream_name)).value == b"0-0"


@pytest.mark.anyio
async def test_the_blocks_own_error_wins_over_a_member_tasks_failure(
    client: LiftbridgeClient, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await make_stream(client, stream_name, 1, 0)

    async def on_assigned(partitions: list[GroupPartition]) -> None:
        raise _Halt("the callback's")

    async def block() -> None:
        async with client.consumer(
            "g-" + stream_name, [stream_name], on_assigned=on_assigned
        ) as member:
            try:
                await member.wait_assigned()
            except anyio.get_cancelled_exc_class():
                # Cancelled because the callback's task failed: the block
                # raises an error of its own instead.
                raise _UserError("the block's") from None

    with anyio.fail_after(HANG_GUARD), pytest.raises(_UserError, match="the block's"):
        await block()
    assert '_Halt("the callback\'s")' in caplog.text


@pytest.mark.anyio
async def test_a_cancelled_member_block_stays_cancelled(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 0)
    with anyio.fail_after(HANG_GUARD), anyio.CancelScope() as scope:
        async with client.consumer("g-" + stream_name, [stream_name]) as member:
            await member.wait_assigned()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_fetching_with_a_stale_epoch_is_refused(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 0)
    group = "g-" + stream_name
    first = await client.join_consumer_group(group, "m1", [stream_name])
    second = await client.join_consumer_group(group, "m2", [stream_name])
    assert second.epoch != first.epoch
    with pytest.raises(ErrorStaleEpoch, match="epoch"):
        await client.fetch_consumer_group_assignments(
            group, "m1", first.epoch, coordinator=first.coordinator
        )
    await client.leave_consumer_group(group, "m1")
    await client.leave_consumer_group(group, "m2")


@pytest.mark.anyio
async def test_consumer_arguments_are_validated(client: LiftbridgeClient) -> None:
    with pytest.raises(ValueError, match="group id"):
        client.consumer("", ["s"])
    with pytest.raises(ValueError, match="stream"):
        client.consumer("g", [])


@pytest.mark.anyio
async def test_checkpoint_after_a_partition_moved_does_not_commit_for_it(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 5)
    group = "g-" + stream_name
    cursor_id = f"__group:{group}"
    async with client.consumer(
        group,
        [stream_name],
        consumer_id="a",
        auto_offset=AutoOffset.EARLIEST,
        auto_checkpoint_interval=None,
    ) as a:
        messages = await take(a, 10)
        # Each message handed out before the last counts as processed.
        processed: dict[int, int] = {}
        for m in messages[:-1]:
            processed[m.partition] = max(processed.get(m.partition, -1), m.offset)
        assert set(processed) == {0, 1}
        # Another writer's commit, which `a` never saw (the partition's next
        # owner's, say): whenever `a` learns that the partition moved, it
        # must leave that position alone. On both partitions, as which one
        # moves is known only after the join.
        theirs = 1000
        for partition in (0, 1):
            await client.cursor_store.store(stream_name, partition, cursor_id, theirs)
        # Member b joins: the coordinator gives it one of a's partitions, and
        # a does not know yet (it polls every 0.8 s).
        joined = await client.join_consumer_group(group, "b", [stream_name])
        b_assignments = await client.fetch_consumer_group_assignments(
            group, "b", joined.epoch, coordinator=joined.coordinator
        )
        (moved,) = [p for assignment in b_assignments.assignments for p in assignment.partitions]
        kept = 1 - moved

        async def b_heartbeat() -> None:
            # b must stay a member (2 s consumer timeout) while the test runs.
            epoch = joined.epoch
            while True:
                try:
                    await client.fetch_consumer_group_assignments(
                        group, "b", epoch, coordinator=joined.coordinator
                    )
                except ErrorStaleEpoch:
                    meta = await client.fetch_consumer_group_metadata(group)
                    assert meta is not None
                    epoch = meta.epoch
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(b_heartbeat)
            await a.checkpoint()
            assert await client.cursor_store.load(stream_name, moved, cursor_id) == theirs
            assert await client.cursor_store.load(stream_name, kept, cursor_id) == processed[kept]
            # a's own poll then takes the partition away: no hand-over commit
            # either, as its cursor moved.
            await wait_until(lambda: a.assignments == {stream_name: [kept]}, "a loses a partition")
            assert await client.cursor_store.load(stream_name, moved, cursor_id) == theirs
            tg.cancel_scope.cancel()
        await client.leave_consumer_group(group, "b")


# ---------------------------------------------------------------- a member's controls


class _Rebalances:
    """What a member's on_assigned and on_revoked callbacks were given, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, list[GroupPartition]]] = []

    async def assigned(self, partitions: list[GroupPartition]) -> None:
        self.events.append(("assigned", partitions))

    async def revoked(self, partitions: list[GroupPartition]) -> None:
        self.events.append(("revoked", partitions))

    def owned(self) -> set[GroupPartition]:
        out: set[GroupPartition] = set()
        for kind, partitions in self.events:
            if kind == "assigned":
                out.update(partitions)
            else:
                out.difference_update(partitions)
        return out


@pytest.mark.anyio
async def test_rebalance_callbacks_name_the_partitions_that_came_and_went(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 4, 0)
    group = "g-" + stream_name
    seen_a, seen_b = _Rebalances(), _Rebalances()
    everything = {GroupPartition(stream_name, p) for p in range(4)}
    async with client.consumer(
        group, [stream_name], on_assigned=seen_a.assigned, on_revoked=seen_a.revoked
    ) as a:
        await wait_until(lambda: seen_a.events != [], "a's first assignment")
        assert seen_a.events == [("assigned", sorted(everything))]
        async with client.consumer(
            group, [stream_name], on_assigned=seen_b.assigned, on_revoked=seen_b.revoked
        ) as b:

            def reads(consumer: Consumer) -> set[GroupPartition]:
                return {
                    GroupPartition(stream_name, p)
                    for p in consumer.assignments.get(stream_name, [])
                }

            # The callbacks agree with what each member reads (a read task
            # restarts after the server ends it, hence the wait).
            await wait_until(
                lambda: (
                    len(seen_a.owned()) == len(seen_b.owned()) == 2
                    and reads(a) == seen_a.owned()
                    and reads(b) == seen_b.owned()
                ),
                "a 2/2 split, as the callbacks tell it",
            )
            assert seen_a.owned() | seen_b.owned() == everything
            assert all(kind == "assigned" for kind, _ in seen_b.events)
            kinds = [kind for kind, _ in seen_a.events]
            assert "revoked" in kinds
        # b left: a gets its partitions back.
        await wait_until(lambda: seen_a.owned() == everything, "a takes b's partitions")
    # Leaving calls no callback.
    assert seen_a.owned() == everything


@pytest.mark.anyio
async def test_a_failing_callback_is_logged_and_the_member_goes_on(
    client: LiftbridgeClient, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await make_stream(client, stream_name, 2, 3)

    async def broken(partitions: list[GroupPartition]) -> None:
        raise _UserError(f"callback saw {partitions}")

    with caplog.at_level("ERROR", logger="lbwire.consumer"):
        async with client.consumer(
            "g-" + stream_name,
            [stream_name],
            auto_offset=AutoOffset.EARLIEST,
            on_assigned=broken,
        ) as consumer:
            messages = await take(consumer, 6)
    assert len(messages) == 6
    (record,) = [r for r in caplog.records if "on_assigned" in r.getMessage()]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], _UserError)


@pytest.mark.anyio
async def test_commit_offsets_stores_the_last_processed_offset(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 5)
    group = "g-" + stream_name
    cursor_id = f"__group:{group}"
    async with client.consumer(
        group, [stream_name], auto_offset=AutoOffset.EARLIEST, auto_checkpoint_interval=None
    ) as consumer:
        await consumer.wait_assigned()
        # The next offset to read, as the reader's commit(offsets) takes it;
        # the cursor holds the one before (go-liftbridge's convention).
        await consumer.commit({0: 3, (stream_name, 1): 2})
        assert await client.cursor_store.load(stream_name, 0, cursor_id) == 2
        assert await client.cursor_store.load(stream_name, 1, cursor_id) == 1
        assert await consumer.lag() == {
            GroupPartition(stream_name, 0): 2,
            GroupPartition(stream_name, 1): 3,
        }
        with pytest.raises(ErrorInvalidPartition, match="not assigned"):
            await consumer.commit({7: 1})
        with pytest.raises(ValueError, match="negative"):
            await consumer.commit({0: -1})
        with pytest.raises(ValueError, match="not assigned"):
            consumer.seek(("other", 0), 0)


@pytest.mark.anyio
async def test_lag_counts_what_is_after_the_committed_position(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 6)
    key = GroupPartition(stream_name, 0)
    async with client.consumer(
        "g-" + stream_name,
        [stream_name],
        auto_offset=AutoOffset.EARLIEST,
        auto_checkpoint_interval=None,
    ) as consumer:
        await consumer.wait_assigned()
        assert await consumer.lag() == {key: 6}  # nothing committed yet
        await take(consumer, 4)
        await consumer.commit()  # offsets 0-2 are processed (3 is in hand)
        assert await consumer.lag() == {key: 3}
        await take(consumer, 2)
        await consumer.commit()
        await client.publish(b"late", stream=stream_name, partition=0)
        await wait_until(lambda: _async_eq(consumer.lag(), {key: 2}), "lag counts the new message")


async def _async_eq(result: Awaitable[object], expected: object) -> bool:
    return await result == expected


@pytest.mark.anyio
async def test_seek_reads_a_partition_again_from_the_given_offset(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 1, 5)
    async with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
    ) as consumer:
        first = await take(consumer, 4)
        assert [m.offset for m in first] == [0, 1, 2, 3]
        consumer.seek(0, 1)
        again = await take(consumer, 4)
    assert [m.offset for m in again] == [1, 2, 3, 4]


@pytest.mark.anyio
async def test_a_paused_partition_hands_out_nothing_until_resumed(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 4)
    async with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
    ) as consumer:
        await consumer.wait_assigned()
        consumer.pause(0)
        assert consumer.paused() == [GroupPartition(stream_name, 0)]
        unpaused = await take(consumer, 4)
        assert [(m.partition, m.offset) for m in unpaused] == [(1, o) for o in range(4)]
        # Nothing else comes while partition 0 is paused (its messages wait
        # in the member's buffer or at the server).
        with anyio.move_on_after(0.5) as waited:
            await consumer.__anext__()
        assert waited.cancel_called
        consumer.resume(0)
        assert consumer.paused() == []
        resumed = await take(consumer, 4)
    assert [(m.partition, m.offset) for m in resumed] == [(0, o) for o in range(4)]


@pytest.mark.anyio
async def test_a_member_of_several_streams_names_partitions_by_stream(
    client: LiftbridgeClient, stream_name: str
) -> None:
    other = stream_name + "-b"
    await make_stream(client, stream_name, 1, 2)
    await make_stream(client, other, 1, 2)
    async with client.consumer(
        "g-" + stream_name,
        [stream_name, other],
        auto_offset=AutoOffset.EARLIEST,
        auto_checkpoint_interval=None,
    ) as consumer:
        await consumer.wait_assigned()
        with pytest.raises(ValueError, match=r"\(stream, partition\)"):
            consumer.pause(0)
        await consumer.commit({(other, 0): 2})
        assert await consumer.lag() == {
            GroupPartition(stream_name, 0): 2,
            GroupPartition(other, 0): 0,
        }


@pytest.mark.anyio
async def test_a_commit_in_on_revoked_hands_the_partition_over(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 5)
    group = "g-" + stream_name
    cursor_id = f"__group:{group}"
    committed_in_callback: list[GroupPartition] = []
    a_ref: list[Consumer] = []

    async def on_revoked(partitions: list[GroupPartition]) -> None:
        # Everything of the revoked partitions counts as processed here.
        await a_ref[0].commit({p: 5 for p in partitions})
        committed_in_callback.extend(partitions)

    async with client.consumer(
        group,
        [stream_name],
        consumer_id="a",
        auto_offset=AutoOffset.EARLIEST,
        auto_checkpoint_interval=None,
        on_revoked=on_revoked,
    ) as a:
        a_ref.append(a)
        await a.wait_assigned()
        async with client.consumer(group, [stream_name], consumer_id="b") as b:
            await wait_until(lambda: committed_in_callback != [], "a's on_revoked committed")
            (moved,) = committed_in_callback
            await wait_until(
                lambda: b.assignments == {stream_name: [moved.partition]}, "b reads it"
            )
            assert await client.cursor_store.load(stream_name, moved.partition, cursor_id) == 4
            # Once revoked, the partition is not a's to commit.
            with pytest.raises(ErrorInvalidPartition):
                await a.commit({moved: 5})


@pytest.mark.anyio
async def test_batches_of_a_member_leave_a_paused_partition_out(
    client: LiftbridgeClient, stream_name: str
) -> None:
    await make_stream(client, stream_name, 2, 3)
    async with client.consumer(
        "g-" + stream_name, [stream_name], auto_offset=AutoOffset.EARLIEST
    ) as consumer:
        await consumer.wait_assigned()
        consumer.pause(0)
        got: list[tuple[int, int]] = []
        with anyio.fail_after(HANG_GUARD):
            async for batch in consumer.batches(10, 0.05):
                got.extend((m.partition, m.offset) for m in batch)
                if len(got) >= 3:
                    break
        assert got == [(1, 0), (1, 1), (1, 2)]
        consumer.resume(0)
        with anyio.fail_after(HANG_GUARD):
            async for batch in consumer.batches(10, 0.05):
                got.extend((m.partition, m.offset) for m in batch)
                if len(got) >= 6:
                    break
    assert got[3:] == [(0, 0), (0, 1), (0, 2)]
