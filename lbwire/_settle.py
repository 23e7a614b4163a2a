"""Settled publishing: each publish ends stored exactly once, or with an error that says not.

After an ack timeout or a connection lost once the request was written, a
publish may or may not be stored, and a message missing from the log now
may still land later (from NATS, or from the leader's uncommitted tail): no
read alone can settle that. The fence is Liftbridge's optimistic
concurrency control. Every copy of one publish (the original and each
resend) carries the same expected offset E, so at most one copy can be
stored, and only at E. Resending then settles the outcome: an ack stores it
at E; a refusal (the partition's next offset is not E) means E is taken,
and the message stored there, which never changes, says whose it is. The
log keeps no correlation id, so each settled message carries its id in the
`SETTLE_HEADER` header, which the read compares.

A stream without concurrency control ignores expected offsets, so nothing
fences its resends: lbwire learns which kind a partition is from the first
settled publish to it (sent with an expected offset no partition has, which
a fenced partition refuses and an unfenced one stores), and refuses settled
publishes to an unfenced partition from then on.

A restarted server (SIGKILLed, v1.9.0) holds records past the high
watermark it last checkpointed and delivers none of them until a message is
appended. When the record at the fence is held so, and nobody else writes
to the partition (every writer may be settling, each waiting to read its
fence), reading it waits out the whole settle time: so the settler appends
a record of its own (a nudge, `NUDGE_HEADER`) once a read of the fence
waited `NUDGE_AFTER` seconds while the fence is past the high watermark.

`Settler` holds, per partition, whether it is fenced and the next offset
this client expects there; settled publishes to one partition take turns.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import anyio

from . import wire
from ._log import LazyLogger
from .error import (
    ErrorAckTimeout,
    ErrorIncorrectOffset,
    ErrorInvalidArgument,
    ErrorNotFound,
    ErrorNotStored,
    ErrorUnsettled,
    LiftbridgeError,
)
from .retry import Backoff
from .types import Ack, AckPolicy, Message, StopPosition

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._publish import Publisher
    from .types import PartitionMetadata

__all__ = ["NUDGE_AFTER", "NUDGE_HEADER", "SETTLE_HEADER", "Settler"]

logger = LazyLogger("lbwire.publish")

#: The header a settled message carries its correlation id in: the log keeps
#: no correlation id, and settling compares the message stored at the fence.
SETTLE_HEADER = "lbwire-settle-id"

#: The header of a settler's nudge (an empty, keyless message appended to
#: make a restarted server deliver what it holds past its high watermark),
#: and its value.
NUDGE_HEADER = "lbwire-nudge"
NUDGE = b"nudge"

#: Seconds a read waits for a record held past the high watermark before
#: a nudge is appended.
NUDGE_AFTER = 1.0

#: How many settled correlation ids a client remembers to refuse a repeat.
REMEMBERED_IDS = 65536

#: An expected offset no partition ever has: a fenced partition refuses it,
#: an unfenced one ignores it (only -1 means "no check" to the server).
_PROBE_OFFSET = -2

#: Fresh conflicts (another producer took the offset this client expected)
#: retried with the partition's new next offset before giving up.
FRESH_CONFLICTS = 5

#: The `method` a settled publish's resends are reported with (`ClientObserver.on_retry`).
RESEND_METHOD = "PublishSettled"

ReadAt = Callable[..., "AsyncIterator[Message]"]
PartitionInfo = Callable[[str, int], Any]
#: A nudge's key and headers.
NudgeRecord = Tuple[Optional[bytes], Dict[str, bytes]]


class _Fence:
    """What one client knows of one partition's fence."""

    __slots__ = ("fenced", "lock", "next")

    def __init__(self) -> None:
        #: True: concurrency control is on; False: off; None: not known yet.
        self.fenced: Optional[bool] = None
        #: The offset the next message is expected at (None: ask the leader).
        self.next: Optional[int] = None
        self.lock = anyio.Lock()


def _ambiguous(error: LiftbridgeError) -> bool:
    """Whether a publish that failed with `error` may have been stored."""
    if error.not_processed:
        return False
    return isinstance(error, ErrorAckTimeout) or error.transient


class Settler:
    """Settled publishes of one client (see the module docstring).

    Args:
        publisher: Sends each copy (`Publisher.publish`).
        partition_info: `get_partition_metadata(stream, partition)`.
        read: `subscribe`, to read the message at the fence.
    """

    def __init__(self, publisher: Publisher, partition_info: PartitionInfo, read: ReadAt) -> None:
        self._publisher = publisher
        self._partition_info = partition_info
        self._read = read
        self._fences: Dict[Tuple[str, int], _Fence] = {}
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._nudges: Dict[str, NudgeRecord] = {}

    def nudge_with(self, stream: str, key: Optional[bytes], headers: Dict[str, bytes]) -> None:
        """Nudge `stream` with an empty message of this key and these headers.

        A key-value table's nudges carry a key its view skips, so that
        compaction keeps only the last of them (it keeps every keyless
        message).
        """
        self._nudges[stream] = (key, headers)

    def claim(self, correlation_id: str) -> None:
        """Refuse a correlation id a settled publish of this client used lately; remember it.

        An id is forgotten again when its publish ends without a copy that
        is or can be stored (anything but an Ack or `ErrorUnsettled`).

        Raises:
            ErrorInvalidArgument: The id was used (unique ids are what
                settling tells messages apart by).
        """
        ids = self._ids
        if correlation_id in ids:
            raise ErrorInvalidArgument(
                f"Correlation id {correlation_id!r} was already used by a settled publish: "
                "settling tells messages apart by their ids, which must be unique "
                "(leave correlation_id unset to get a fresh one)"
            )
        ids[correlation_id] = None
        if len(ids) > REMEMBERED_IDS:
            ids.popitem(last=False)

    async def publish(
        self,
        request: wire.PublishRequest,
        ack_timeout: Optional[float],
        settle_time: float,
        expected_offset: Optional[int],
    ) -> Ack:
        """Publish `request` settled; the Ack of the one stored copy.

        Raises:
            ErrorNotStored: Settled: not stored (another message holds the offset).
            ErrorUnsettled: Not settled within `settle_time`; stored at most once.
            ErrorInvalidArgument: The partition has no concurrency control.
        """
        key = (request.stream, request.partition)
        fence = self._fences.get(key)
        if fence is None:
            fence = self._fences[key] = _Fence()
        async with fence.lock:
            try:
                if fence.fenced is False:
                    raise ErrorInvalidArgument(_unfenced(request))
                if fence.fenced is None:
                    ack = await self._probe(fence, request, ack_timeout, settle_time)
                    if ack is not None:
                        return ack
                return await self._fenced(fence, request, ack_timeout, settle_time, expected_offset)
            except LiftbridgeError as error:
                if not isinstance(error, ErrorUnsettled):
                    # No copy is or can be stored: the id may be used again.
                    self._ids.pop(request.correlationId, None)
                raise

    async def _probe(
        self,
        fence: _Fence,
        request: wire.PublishRequest,
        ack_timeout: Optional[float],
        settle_time: float,
    ) -> Optional[Ack]:
        """Learn whether the partition is fenced, by sending `request` where no offset is.

        A fenced partition refuses it (so it is not stored: None). An unfenced
        one stores it: its Ack. Every copy carries the same impossible offset,
        so on a fenced partition none is ever stored, and a resend is safe.
        """
        request.expectedOffset = _PROBE_OFFSET
        deadline = anyio.current_time() + settle_time
        backoff = Backoff(self._publisher.router.policy, deadline)
        copies = 0
        while True:
            copies += 1
            try:
                ack = await self._publisher.publish(request, ack_timeout, False)
            except ErrorIncorrectOffset:
                fence.fenced = True
                self._publisher.router.saw(request.stream)
                return None
            except LiftbridgeError as error:
                if not _ambiguous(error) or not await backoff.wait():
                    raise _unsettled(request, None, error) from error
                self._resending(copies, error)
                continue
            assert ack is not None  # (an acked publish)
            fence.fenced = False
            fence.next = ack.offset + 1
            logger.warning("%s", _unfenced(request))
            if copies > 1:
                # Without a fence, an earlier copy may be stored too.
                logger.warning(
                    "The settled publish %r to %r may be stored twice: the stream has "
                    "no optimistic concurrency control",
                    request.correlationId,
                    request.stream,
                )
            return ack

    async def _fenced(
        self,
        fence: _Fence,
        request: wire.PublishRequest,
        ack_timeout: Optional[float],
        settle_time: float,
        expected_offset: Optional[int],
    ) -> Ack:
        conflicts = 0
        while True:
            if expected_offset is not None:
                offset = expected_offset
            else:
                if fence.next is None:
                    fence.next = await self._next_offset(fence, request, settle_time)
                offset = fence.next
            request.expectedOffset = offset
            try:
                ack = await self._publisher.publish(request, ack_timeout, False)
            except ErrorIncorrectOffset as exc:
                fence.next = None
                # Refused; yet a copy of this message may hold the offset
                # (one stored by an earlier run of the program, or one the
                # transport sent before this): only the record there tells.
                try:
                    ack = await self._refused(request, offset, ack_timeout, settle_time, exc)
                except ErrorNotStored:
                    if expected_offset is not None:
                        raise
                    ack = None  # another message's: follow to the next offset
                if ack is not None:
                    fence.next = ack.offset + 1
                    return ack
                conflicts += 1
                if expected_offset is not None or conflicts >= FRESH_CONFLICTS:
                    raise _not_stored(request, offset, "its expected offset was taken") from exc
                continue
            except LiftbridgeError as error:
                if not _ambiguous(error):
                    raise
                fence.next = None
                ack = await self._settle(request, offset, ack_timeout, settle_time, error)
            assert ack is not None  # (an acked publish)
            fence.next = ack.offset + 1
            return ack

    async def _next_offset(
        self, fence: _Fence, request: wire.PublishRequest, settle_time: float
    ) -> int:
        """The offset after the partition's newest message: where the next fence goes.

        A restarted server calls the stream missing until it has loaded it:
        then this asks again, within `settle_time` (a refusal stores nothing,
        but the publish is to be settled, not refused for that), beyond the
        retry policy within which the lookup itself asks again.

        Raises:
            ErrorNotFound: The stream or partition does not exist.
        """
        backoff = Backoff(self._publisher.router.policy, anyio.current_time() + settle_time)
        while True:
            try:
                info: PartitionMetadata = await self._partition_info(
                    request.stream, request.partition
                )
            except ErrorNotFound:
                # (A probed partition exists: `_probe` told the router so,
                # as the client's metadata, refreshed from the restarted
                # server, may not know the stream any more.)
                if not self._publisher.router.loading(request.stream) or not await backoff.wait():
                    raise
                continue
            return info.newest_offset + 1

    async def _settle(
        self,
        request: wire.PublishRequest,
        offset: int,
        ack_timeout: Optional[float],
        settle_time: float,
        first: LiftbridgeError,
    ) -> Ack:
        """Settle a publish whose copy at `offset` may be stored: resend, or read the fence."""
        correlation_id = request.correlationId
        deadline = anyio.current_time() + settle_time
        backoff = Backoff(self._publisher.router.policy, deadline)
        last: LiftbridgeError = first
        copy = 0
        while True:
            if not await backoff.wait():
                raise _unsettled(request, offset, last)
            copy += 1
            self._resending(copy, last)
            # Each copy has an id of its own on the wire, so a late ack or
            # refusal of an earlier one settles no later one; the settle
            # header keeps the message's own id.
            request.correlationId = f"{correlation_id}~{copy}"
            try:
                ack = await self._publisher.publish(request, ack_timeout, False)
            except ErrorIncorrectOffset as exc:
                last = exc
                found = await self._whose(request, correlation_id, offset, deadline, ack_timeout)
                if found is None:
                    continue  # the offset is not readable yet
                if found.headers.get(SETTLE_HEADER) == correlation_id.encode():
                    logger.debug("Settled %r: found stored at offset %d", correlation_id, offset)
                    return _ack_from(found, request, correlation_id)
                logger.debug("Settled %r: offset %d holds another message", correlation_id, offset)
                request.correlationId = correlation_id
                raise _not_stored(request, offset, "another message holds its offset") from exc
            except LiftbridgeError as error:
                # Lost again, or refused while the server recovers (a stream
                # it has not loaded yet): the fence holds, so try again.
                last = error
                continue
            finally:
                request.correlationId = correlation_id
            assert ack is not None  # (an acked publish)
            logger.debug("Settled %r: copy %d acked at offset %d", correlation_id, copy, ack.offset)
            ack.correlationId = correlation_id
            return ack

    async def _refused(
        self,
        request: wire.PublishRequest,
        offset: int,
        ack_timeout: Optional[float],
        settle_time: float,
        refusal: ErrorIncorrectOffset,
    ) -> Optional[Ack]:
        """The Ack of `request` found stored at `offset`, where a copy of it was refused.

        None when another message holds the offset, or none does (the
        partition is short of it).

        Raises:
            ErrorNotStored: Settling found another message at the offset.
            ErrorUnsettled: The offset is taken but could not be read in time.
        """
        correlation_id = request.correlationId
        info: Optional[PartitionMetadata]
        try:
            info = await self._partition_info(request.stream, request.partition)
        except LiftbridgeError:
            info = None
        if info is not None and info.newest_offset < offset:
            return None  # nothing there: another producer's turn came first
        deadline = anyio.current_time() + settle_time
        found = await self._whose(request, correlation_id, offset, deadline, ack_timeout)
        if found is None:
            # Taken, but not readable now (a restarted server delivers
            # nothing past its high watermark until a message is appended):
            # settle it as any ambiguous outcome, by fenced resends and reads.
            return await self._settle(request, offset, ack_timeout, settle_time, refusal)
        if found.headers.get(SETTLE_HEADER) != correlation_id.encode():
            return None
        logger.debug("Settled %r: refused, but found stored at offset %d", correlation_id, offset)
        return _ack_from(found, request, correlation_id)

    def _resending(self, copy: int, error: LiftbridgeError) -> None:
        """Tell the observer that copy `copy` + 1 of a settled publish goes out after `error`."""
        report = self._publisher.connections.observers.retry_reporter(RESEND_METHOD)
        if report is not None:
            report(copy, error)

    async def _whose(
        self,
        request: wire.PublishRequest,
        correlation_id: str,
        offset: int,
        deadline: float,
        ack_timeout: Optional[float],
    ) -> Optional[Message]:
        """The message stored at `offset`, or None when it cannot be read now.

        Raises:
            ErrorUnsettled: Retention removed `offset` already.
        """
        try:
            info: PartitionMetadata = await self._partition_info(request.stream, request.partition)
        except LiftbridgeError:
            return None
        if info.newest_offset < offset:
            return None  # nothing there yet (the log's uncommitted tail was cut)
        # Until it is committed the offset is not readable: look again later.
        wait = ack_timeout if ack_timeout is not None else self._publisher.options.ack_timeout
        end = anyio.current_time() + max(0.0, min(wait, deadline - anyio.current_time()))
        found: Optional[Message] = None
        if info.high_watermark < offset:
            found = await self._read_at(
                request, offset, min(end, anyio.current_time() + NUDGE_AFTER)
            )
            if found is None and anyio.current_time() < end:
                await self._nudge(request, offset, ack_timeout)
        if found is None:
            found = await self._read_at(request, offset, end)
        if found is not None and found.offset > offset:
            # Asked for below the oldest offset, the server starts at the oldest.
            raise ErrorUnsettled(
                f"Cannot settle the publish {correlation_id!r} to {request.stream!r}: "
                f"retention removed offset {offset}, where it may be stored (at most once)",
                offset=offset,
                correlation_id=correlation_id,
            )
        return found

    async def _read_at(
        self, request: wire.PublishRequest, offset: int, end: float
    ) -> Optional[Message]:
        """The message at `offset` (or the first after it), or None when none comes by `end`."""
        messages = self._read(
            request.stream,
            partition=request.partition,
            start_offset=offset,
            stop_position=StopPosition.STOP_OFFSET,
            stop_offset=offset,
            on_undecodable="raw",
        )
        try:
            with anyio.move_on_after(max(0.0, end - anyio.current_time())):
                async for message in messages:
                    if message.offset >= offset:
                        return message
                    # Asked for beyond the high watermark, the server starts
                    # right after it: read on to the offset.
        except LiftbridgeError:
            return None
        finally:
            await messages.aclose()  # type: ignore[attr-defined]
        return None

    async def _nudge(
        self, request: wire.PublishRequest, offset: int, ack_timeout: Optional[float]
    ) -> None:
        """Append a nudge if the server still holds `offset` past its high watermark."""
        stream, partition = request.stream, request.partition
        key, headers = self._nudges.get(stream, (None, {NUDGE_HEADER: NUDGE}))
        try:
            info: PartitionMetadata = await self._partition_info(stream, partition)
            if not info.high_watermark < offset <= info.newest_offset:
                return
            logger.debug("Nudging %r partition %d to deliver offset %d", stream, partition, offset)
            nudge = self._publisher.request(
                b"",
                stream=stream,
                key=key,
                partition=partition,
                headers=headers,
                ack_inbox=None,
                correlation_id=None,
                ack_policy=AckPolicy.LEADER,
                auto_compress=False,
                expected_offset=None,
            )
            await self._publisher.publish(nudge, ack_timeout, False)
        except LiftbridgeError as error:
            # Reading goes on; the next read of the fence tries again.
            logger.debug("No nudge to %r partition %d: %s", stream, partition, error)


def _unfenced(request: wire.PublishRequest) -> str:
    return (
        f"Stream {request.stream!r} partition {request.partition} has no optimistic "
        "concurrency control, so a settled publish cannot fence its resends: create "
        "the stream with optimistic_concurrency_control=True, or publish without settle"
    )


def _not_stored(request: wire.PublishRequest, offset: int, why: str) -> ErrorNotStored:
    return ErrorNotStored(
        f"Not stored: the message {request.correlationId!r} to {request.stream!r} "
        f"partition {request.partition} was refused at offset {offset} ({why}); "
        "publishing it again stores no duplicate",
        offset=offset,
        correlation_id=request.correlationId,
    )


def _unsettled(
    request: wire.PublishRequest, offset: Optional[int], cause: LiftbridgeError
) -> ErrorUnsettled:
    where = f"at offset {offset}" if offset is not None else "nowhere on a fenced partition"
    return ErrorUnsettled(
        f"Could not settle the publish {request.correlationId!r} to {request.stream!r} "
        f"partition {request.partition} in time: it may be stored, at most once, "
        f"{where} ({cause})",
        offset=offset,
        correlation_id=request.correlationId,
        status=cause.status,
    )


def _ack_from(message: Message, request: wire.PublishRequest, correlation_id: str) -> Ack:
    """The Ack of a message found stored at the fence (its own ack was lost)."""
    return wire.Ack(
        stream=request.stream,
        partitionSubject=message.subject,
        msgSubject=message.subject,
        offset=message.offset,
        ackInbox="",
        correlationId=correlation_id,
        ackPolicy=request.ackPolicy,
        receptionTimestamp=message.timestamp,
        commitTimestamp=message.timestamp,
    )
