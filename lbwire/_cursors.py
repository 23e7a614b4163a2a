"""Cursors: the stored positions of named readers, kept in the `__cursors` stream.

`CursorStore.store` and `load` move the raw stored value; the client's
`set_cursor`/`get_cursor` apply its `CursorConvention` on top, and consumer
groups store the last processed offset through `store` directly, as
go-liftbridge does.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional, Tuple

import anyio

from . import wire
from ._log import LazyLogger
from .error import (
    ErrorCursorNotFound,
    ErrorInvalidArgument,
    ErrorInvalidPartition,
    ErrorNotFound,
    LiftbridgeError,
)
from .retry import RetryPolicy, retrying
from .types import CursorConvention, StartPosition

__all__ = ["MISSING_CURSOR_STARTS", "CursorStore", "missing_cursor_start"]

logger = LazyLogger("lbwire")

#: `Router.call_cursor_leader`'s signature: (stream, partition, cursor id,
#: method, request, response type) -> response.
CursorCall = Callable[[str, int, str, str, Any, Any], Awaitable[Any]]


class CursorStore:
    """Stores and loads cursors at the leader of their `__cursors` partition.

    Args:
        call: Makes one cursor call (`Router.call_cursor_leader`).
        convention: What `set_processed` stores and `resume_offset` reads.
        policy: Bounds how long a cursor stream that answered before and is
            reported missing (a restarting server) is waited for.
    """

    def __init__(
        self,
        call: CursorCall,
        convention: CursorConvention,
        policy: Optional[RetryPolicy] = None,
    ) -> None:
        self._call = call
        self.convention = convention
        self.policy = policy or RetryPolicy()
        # Whether a cursor call ever succeeded: the cursors stream exists.
        self._stream_seen = False
        # Per cursor: its lock and how many calls hold or wait for it.
        self._busy: Dict[Tuple[str, int, str], Tuple[anyio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _one_at_a_time(
        self, stream: str, partition: int, cursor_id: str
    ) -> AsyncIterator[None]:
        """Run this client's calls on one cursor one after the other.

        The server (v1.9.0 and newest) answers a FetchCursor its cache cannot
        from the log, then caches what it read, without a lock across both:
        a SetCursor that lands meanwhile is overwritten in the cache by the
        older value, and later fetches return that until a restart. The
        store of a consumer's commit racing the load of the same member's
        partition start did exactly this. Within one client, nothing
        overlaps; other clients can still race (docs/reliability.md).
        """
        key = (stream, partition, cursor_id)
        lock, users = self._busy.get(key) or (anyio.Lock(), 0)
        self._busy[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._busy[key]
            if users == 1:
                del self._busy[key]
            else:
                self._busy[key] = (lock, users - 1)

    async def _cursor_call(self, method: str, request: Any, response_type: Any) -> Any:
        """One cursor call; "no such stream" is waited out once the stream was seen.

        A restarted server answers before it has loaded its streams, `__cursors`
        included, and reports them missing meanwhile; a server with cursors
        disabled never had the stream, and fails at once.
        """
        stream_seen = self._stream_seen

        def restarting(error: LiftbridgeError) -> bool:
            if isinstance(error, ErrorNotFound):
                if stream_seen:
                    logger.info("%s: %s (a restarting server?); trying again", method, error)
                return stream_seen
            return False

        async def attempt(_: int) -> Any:
            return await self._call(
                request.stream,
                request.partition,
                request.cursorId,
                method,
                request,
                response_type,
            )

        # One budget for the whole call: the retries inside (routing,
        # unavailable brokers) draw on the same one.
        response = await retrying(attempt, self.policy, retry_if=restarting)
        self._stream_seen = True
        return response

    async def store(self, stream: str, partition: int, cursor_id: str, value: int) -> None:
        """Store `value` as the cursor, with no convention applied."""
        async with self._one_at_a_time(stream, partition, cursor_id):
            await self._cursor_call(
                "SetCursor",
                wire.SetCursorRequest(
                    stream=stream, partition=partition, cursorId=cursor_id, offset=value
                ),
                wire.SetCursorResponse,
            )

    async def load(self, stream: str, partition: int, cursor_id: str) -> int:
        """The stored cursor value (-1 when there is none), with no convention applied."""
        async with self._one_at_a_time(stream, partition, cursor_id):
            response = await self._cursor_call(
                "FetchCursor",
                wire.FetchCursorRequest(stream=stream, partition=partition, cursorId=cursor_id),
                wire.FetchCursorResponse,
            )
        offset: int = response.offset
        return offset

    async def set_processed(self, stream: str, partition: int, cursor_id: str, offset: int) -> None:
        """Store that the message at `offset` was processed, by the convention."""
        _check(partition, cursor_id)
        if offset < 0:
            raise ErrorInvalidArgument(f"Cursor offset must not be negative, not {offset}")
        stored = offset + 1 if self.convention == CursorConvention.NEXT else offset
        await self.store(stream, partition, cursor_id, stored)

    async def get(self, stream: str, partition: int, cursor_id: str) -> int:
        """The stored value (-1 when there is none), after checking the arguments."""
        _check(partition, cursor_id)
        return await self.load(stream, partition, cursor_id)

    async def resume_offset(self, stream: str, partition: int, cursor_id: str) -> Optional[int]:
        """The offset a subscription with StartPosition.RESUME starts at.

        None when no cursor is stored (the subscription decides what then).
        """
        stored = await self.get(stream, partition, cursor_id)
        if stored < 0:
            return None
        return stored if self.convention == CursorConvention.NEXT else stored + 1


#: What `missing_cursor` may be: where RESUME starts without a cursor (None: raise).
MISSING_CURSOR_STARTS = (
    StartPosition.EARLIEST,
    StartPosition.LATEST,
    StartPosition.NEW_ONLY,
    None,
)


def missing_cursor_start(
    stream: str, partition: int, cursor_id: str, missing_cursor: Optional[StartPosition]
) -> StartPosition:
    """Where a RESUME subscription whose cursor is missing starts, or the error.

    Liftbridge answers FetchCursor with -1 for a cursor never stored, and may
    do so for one it had stored (its cursors partition can read empty after
    a restart), so a missing cursor is worth a warning: resuming from the
    start replays the partition.
    """
    where = f"{stream!r}/{partition}"
    if missing_cursor is None:
        raise ErrorCursorNotFound(
            f"No cursor {cursor_id!r} is stored for {where} (missing_cursor=None)"
        )
    logger.warning(
        "No cursor %r is stored for %s: StartPosition.RESUME starts at %s "
        "(the missing_cursor argument)",
        cursor_id,
        where,
        missing_cursor.name,
    )
    return missing_cursor


def _check(partition: int, cursor_id: str) -> None:
    if not cursor_id:
        raise ErrorInvalidArgument("cursor_id must not be empty")
    if partition < 0:
        raise ErrorInvalidPartition(f"Partition must not be negative, not {partition}")
