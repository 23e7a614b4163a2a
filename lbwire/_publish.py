"""Publishing: request building, single publishes, and the client's PublishAsync session.

`Publisher` turns `LiftbridgeClient`'s publish arguments into requests and
sends them. Acked single publishes and pipelined ones share the client's one
long-lived PublishAsync stream (`lbwire.publish.PublishSession`), opened on
first use on any broker (the server forwards every publish to NATS); the
unary Publish call carries what that stream cannot (see `Publisher.publish`).
A publish that failed is sent again only when it never went out
(`LiftbridgeError.not_processed`), so no message is stored twice.
`PublishMethods` (`lbwire._publish_methods`) is the client's public publishing facet.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from collections import deque
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    Awaitable,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Optional,
    TypeVar,
)

import anyio

from . import wire
from ._checks import checked_publish_value
from ._log import LazyLogger
from ._room import PublishRoom
from .compression import compress
from .error import (
    ErrorAckTimeout,
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
    ErrorMessageSizeExceeded,
    ErrorNotFound,
    ErrorUnavailable,
    LiftbridgeError,
    PublishAsyncError,
)
from .error._decisions import may_resend, refused_publish
from .retry import retrying
from .types import Ack, AckPolicy, Partitioner

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._address import Address
    from ._pool import ConnectionRegistry
    from ._routing import Router
    from .options import ClientOptions
    from .publish import PendingAck, PublishSession


__all__ = ["Publisher", "new_correlation_id"]

logger = LazyLogger("lbwire.publish")


#: Most `publish_bulk` requests awaiting their acks at once.
BULK_IN_FLIGHT = 1024


_R = TypeVar("_R")


class _Attempt:
    """What one try of a publish found out (see `Publisher._once`)."""

    __slots__ = ("loading", "went_out")

    def __init__(self) -> None:
        #: The broker called the stream missing while it may still be loading it.
        self.loading = False
        #: The message may have reached the server.
        self.went_out = True


def _no_ack(stream: str, wait: float) -> ErrorAckTimeout:
    """A single publish's ack timeout, worded alike on the stream and the unary call."""
    return ErrorAckTimeout(f"No ack for the message to {stream!r} within {wait} s")


# Correlation ids need to be unique, not secret: 128 bits of a generator seeded
# from the OS (again in a forked child, which would otherwise repeat its
# parent's ids) cost less than a system call per publish. Not the `random`
# module's own generator, which the application may seed.
_ids = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):  # (not on Windows)
    os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_correlation_id() -> str:
    """32 random hex digits, like uuid.uuid4().hex."""
    return f"{_ids.getrandbits(128):032x}"


class Publisher:
    """Publishes for one client.

    Args:
        router: Where calls go.
        connections: For the PublishAsync stream's channel.
        options: The client's options (compression, timeouts, partitioner,
            size limit).
    """

    def __init__(
        self, router: Router, connections: ConnectionRegistry, options: ClientOptions
    ) -> None:
        self.router = router
        self.connections = connections
        self.options = options
        self._session: Optional[PublishSession] = None
        #: The bound on this client's publishes in flight on its PublishAsync
        #: streams (publishes outside the client's block wait for their acks
        #: on a stream of their own, outside it).
        self.room = PublishRoom(
            options.publish_async_max_pending, options.publish_async_max_pending_bytes
        )
        self._session_lock: Optional[anyio.Lock] = None
        self._task_group: Optional[TaskGroup] = None
        #: Refusals no awaiter received (see `_report_unclaimed`).
        self.unclaimed_errors = 0
        self._callback_failed = False

    def start(self, task_group: TaskGroup) -> None:
        """Run the PublishAsync reader in `task_group` from now on."""
        self._task_group = task_group
        self._session_lock = anyio.Lock()
        if self._close_idle_session not in self.connections.idle_hooks:
            self.connections.idle_hooks.append(self._close_idle_session)

    async def _close_idle_session(self, now: float, idle_timeout: float) -> None:
        """End the PublishAsync stream once unused for `idle_timeout` (a publish reopens it)."""
        session = self._session
        if session is None or session.closed:
            return
        idle_for = session.idle_for(now)
        if idle_for is not None and idle_for >= idle_timeout:
            logger.debug("Closing the idle PublishAsync stream")
            self._session = None
            await session.aclose()

    def stop(self) -> None:
        """Open no new PublishAsync stream (the task group is closing)."""
        self._task_group = None

    async def aclose(self) -> None:
        """End the PublishAsync stream; acks still awaited fail."""
        session, self._session = self._session, None
        if session is not None:
            with anyio.CancelScope(shield=True):
                await session.aclose()

    # ------------------------------------------------------------------ requests

    def request(
        self,
        value: bytes,
        *,
        stream: Optional[str],
        key: Optional[bytes],
        partition: Optional[int],
        headers: Optional[Dict[str, bytes]],
        ack_inbox: Optional[str],
        correlation_id: Optional[str],
        ack_policy: AckPolicy,
        auto_compress: bool,
        expected_offset: Optional[int],
    ) -> wire.PublishRequest:
        """A PublishRequest, after checking every argument."""
        value = checked_publish_value(value, key=key, headers=headers, partition=partition)
        if ack_policy.__class__ is not AckPolicy:  # (the enum's lookup is not free)
            try:
                ack_policy = AckPolicy(ack_policy)
            except ValueError:
                raise ErrorInvalidArgument(
                    f"Unknown ack policy {ack_policy!r}: use AckPolicy.LEADER, ALL or NONE"
                ) from None
        out_headers: Dict[str, bytes] = {}
        options = self.options
        method = options.compression_method
        if auto_compress and method is not None and len(value) >= options.compression_threshold:
            value = compress(value, method)
            out_headers[options.encoding_header] = method.encode()
        if headers:
            for name, hvalue in headers.items():
                out_headers[name] = bytes(hvalue)
        if expected_offset is not None and expected_offset < 0:
            raise ErrorInvalidArgument(
                f"expected_offset must not be negative, not {expected_offset} "
                "(None skips the check)"
            )
        return wire.PublishRequest(
            key=key or b"",
            value=value,
            stream=stream or "",
            partition=partition or 0,
            headers=out_headers,
            ackInbox=ack_inbox or "",
            correlationId=correlation_id or "",
            ackPolicy=ack_policy,
            # -1 tells a stream with optimistic concurrency control not to
            # check; 0 would demand offset 0 (go-liftbridge sends -1 too).
            expectedOffset=-1 if expected_offset is None else expected_offset,
        )

    def encode(self, request: Any) -> bytes:
        """The request's encoding, refused when larger than `max_publish_size`."""
        encoded: bytes = request.encode()
        limit = self.options.max_publish_size
        if len(encoded) > limit:
            raise ErrorMessageSizeExceeded(
                f"Message of {len(encoded)} bytes exceeds max_publish_size "
                f"({limit} bytes); the server would refuse it"
            )
        return encoded

    async def partition(
        self,
        stream: str,
        key: Optional[bytes],
        value: bytes,
        partition: Optional[int],
        partitioner: Optional[Partitioner],
    ) -> Optional[int]:
        """`partition`, or the one the partitioner (argument or default) chooses."""
        partitioner = partitioner or self.options.partitioner
        if partition is not None or partitioner is None:
            return partition
        count = await self.router.partition_count(stream)
        chosen = partitioner(stream, key, bytes(value), count)
        if not 0 <= chosen < count:
            raise ErrorInvalidArgument(
                f"Partitioner chose partition {chosen} of {stream!r}, which has {count}"
            )
        return chosen

    # ------------------------------------------------------------------ single

    async def publish(
        self, request: wire.PublishRequest, ack_timeout: Optional[float], wait_for_stream: bool
    ) -> Optional[Ack]:
        """Publish one request and wait for its ack (see `LiftbridgeClient.publish`).

        Acked publishes inside the client's block go over the client's
        PublishAsync stream, as Liftbridge's client guide asks (the unary
        Publish RPC is to be deprecated): no call to set up per message.
        The unary call remains for what that stream cannot carry: a caller's
        own ack inbox (the stream replaces it with its own), AckPolicy.NONE
        (on the stream nothing would come back, and the server's refusal of
        the message, e.g. for a missing stream, would be lost), and
        publishes outside the client's block, which has no reader task.
        """
        streamed = (
            self.connections.open
            and self._task_group is not None
            and request.ackPolicy != AckPolicy.NONE
            and not request.ackInbox
        )
        if streamed and not request.correlationId:
            # The stream matches acks to callers by correlation id.
            request.correlationId = new_correlation_id()
        encoded = self.encode(request)
        wait = ack_timeout if ack_timeout is not None else self.options.ack_timeout
        while True:
            try:
                if streamed:
                    return await self._publish_streamed(request, encoded, wait)
                return await self._publish_unary(request, encoded, wait)
            except ErrorNotFound:
                if not wait_for_stream:
                    raise
                # Bounded as a wait_for_stream() with the default timeout.
                await self.router.wait_for_stream(request.stream, self.router.policy.max_time)

    async def _publish_unary(
        self, request: wire.PublishRequest, encoded: bytes, wait: float
    ) -> Optional[Ack]:
        # The server waits for the ack only when the call carries a deadline;
        # unacked publishes carry none, so it takes its fire-and-forget path.
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait
        try:
            response = await self._send(request, encoded, timeout)
        except ErrorDeadlineExceeded as exc:
            raise _no_ack(request.stream, wait) from exc
        return response.ack

    async def _publish_streamed(
        self, request: wire.PublishRequest, encoded: bytes, wait: float
    ) -> Optional[Ack]:
        stream = request.stream

        async def attempt(state: _Attempt) -> Optional[Ack]:
            # Opening tries every broker within the policy itself.
            state.went_out = False
            session = await self.session()
            state.went_out = True
            item = await session.send(request, encoded, wait, observe=False)
            try:
                ack = await item
            except PublishAsyncError as exc:
                error = refused_publish(exc)
                if isinstance(error, ErrorNotFound):
                    address = session.address
                    state.loading = address is not None and self.router.loading(stream, address)
                raise error from None
            except ErrorAckTimeout as exc:
                raise _no_ack(stream, wait) from exc
            self.router.saw(stream)
            return ack

        return await self._once(attempt, "PublishAsync", stream)

    async def _send(
        self, request: wire.PublishRequest, encoded: bytes, timeout: Optional[float]
    ) -> wire.PublishResponse:
        router = self.router
        stream = request.stream

        async def attempt(state: _Attempt) -> wire.PublishResponse:
            address = router.any_broker()
            try:
                response = await router.call(
                    address, "Publish", encoded, wire.PublishResponse, timeout=timeout
                )
            except ErrorNotFound:
                state.loading = self.router.loading(stream, address)
                raise
            except ErrorUnavailable as exc:
                if exc.not_processed:
                    # (Its stream only, not every stream: see Resumption.failed.)
                    await router.refresh_quietly(*([stream] if stream else []))
                raise
            self.router.saw(stream)
            return response

        return await self._once(attempt, "Publish", stream)

    async def _once(
        self, attempt: Callable[[_Attempt], Awaitable[_R]], method: str, stream: str
    ) -> _R:
        """Run `attempt` within the retry policy without storing its message twice.

        A publish that went out may be stored although it then failed (the
        broker died after forwarding it): sending it again could store it
        twice. Only publishes the transport knows the server never began
        (GOAWAY beyond their stream, REFUSED_STREAM, no connection, a
        PublishAsync stream that ended first) are sent again, and those the
        restarted server refused because it had not loaded the stream yet
        (NotFound stores nothing).
        """
        state = _Attempt()
        try:
            # The first try outside `retrying`: most publishes succeed at once.
            try:
                return await attempt(state)
            except LiftbridgeError as error:
                failed = error

            async def run(failures: int) -> _R:
                state.loading = False
                state.went_out = True
                return await attempt(state)

            def retry_if(error: LiftbridgeError) -> bool:
                return may_resend(error) or (state.loading and isinstance(error, ErrorNotFound))

            return await retrying(
                run,
                self.router.policy,
                retry_if=retry_if,
                on_retry=self.connections.observers.retry_reporter(method),
                failed=failed,
            )
        except ErrorUnavailable as exc:
            if exc.not_processed or not state.went_out:
                raise
            raise ErrorUnavailable(
                f"Connection lost while publishing to {stream!r}: the message may "
                f"or may not be stored, and was not sent again ({exc})",
                status=exc.status,
            ) from None

    async def publish_to_subject(
        self, request: wire.PublishToSubjectRequest, ack_timeout: Optional[float]
    ) -> Optional[Ack]:
        """Publish to a NATS subject (see `LiftbridgeClient.publish_to_subject`)."""
        encoded = self.encode(request)
        wait = ack_timeout if ack_timeout is not None else self.options.ack_timeout
        timeout = None if request.ackPolicy == AckPolicy.NONE else wait
        try:
            response = await self.router.call(
                self.router.any_broker(),
                "PublishToSubject",
                encoded,
                wire.PublishToSubjectResponse,
                timeout=timeout,
            )
        except ErrorDeadlineExceeded as exc:
            raise ErrorAckTimeout(
                f"No ack from subject {request.subject!r} within {wait} s"
            ) from exc
        return response.ack

    # ------------------------------------------------------------------ pipelined

    def open_session(self) -> Optional[PublishSession]:
        """The client's PublishAsync stream if it is open (no await: the pipelined path)."""
        session = self._session
        if session is not None and not session.closed:
            return session
        return None

    async def session(self) -> PublishSession:
        """The client's long-lived PublishAsync stream, opened on first use."""
        session = self.open_session()
        if session is not None:
            # Open: no lock, whose checkpoint would cost every publish_async.
            return session
        if self._session_lock is None or self._task_group is None:
            raise RuntimeError(
                "LiftbridgeClient is not open: use 'async with LiftbridgeClient(...) as client'"
            )
        async with self._session_lock:
            session = self._session
            if session is None or session.closed:
                if self._task_group is None:
                    raise RuntimeError("LiftbridgeClient is not open")
                session = self._session = await self._open_session(self._task_group, self.room)
            return session

    async def _open_session(
        self, task_group: TaskGroup, room: Optional[PublishRoom] = None
    ) -> PublishSession:
        """A new PublishAsync stream on any broker; its reader runs in `task_group`."""
        # Imported on first use, as many programs never pipeline.
        from .publish import PublishSession

        connections = self.connections

        async def open_on(address: Address) -> PublishSession:
            if connections.open:
                channel = connections.channel(address)
            else:
                channel = connections.scope_channel(address)
            session = PublishSession(
                channel, task_group, self.connections.observers, room, self._report_unclaimed
            )
            session.address = address
            await session.start()
            return session

        return await self.router.on_any_broker("PublishAsync", open_on)

    def _report_unclaimed(self, error: PublishAsyncError) -> None:
        """A refusal no awaiter receives (of a fire-and-forget publish, mostly): count it, tell.

        It goes to the client's `on_publish_error` callback, whose exceptions
        are logged, never raised; without one, it is logged, at the 1st, 10th,
        100th... such refusal (bounded logging).
        """
        self.unclaimed_errors += 1
        count = self.unclaimed_errors
        callback = self.options.on_publish_error
        if callback is not None:
            try:
                callback(error)
            except Exception as exc:
                if not self._callback_failed:
                    self._callback_failed = True
                    logger.warning("on_publish_error raised %r (ignored; logged once)", exc)
        elif count == 10 ** (len(str(count)) - 1):
            logger.warning(
                "%d publishes refused with nobody awaiting them (AckPolicy.NONE); the latest: %s",
                count,
                error,
            )

    async def send_outside(
        self, request: wire.PublishRequest, encoded: bytes, timeout: float
    ) -> PendingAck:
        """`publish_async` outside the client's block: wait for the ack on a stream of its own.

        The stream and its connection end before this returns, so the
        returned PendingAck is settled: awaiting it gives the ack or raises.
        """
        items = await self._outside(lambda session: session.send(request, encoded, timeout))
        return items[0]

    async def _outside(self, send: Callable[[PublishSession], Awaitable[Any]]) -> List[PendingAck]:
        """Send on a stream of its own (outside the client's block) and wait for the acks."""
        async with self.connections.outside_scope() as task_group:
            session = await self._open_session(task_group)
            try:
                sent = await send(session)
                items: List[PendingAck] = sent if isinstance(sent, list) else [sent]
                for item in items:
                    # An error stays in the item: awaiting it raises it again.
                    with contextlib.suppress(LiftbridgeError):
                        await item
            finally:
                await session.aclose()
        return items

    async def publish_batch(
        self, requests: List[wire.PublishRequest], timeout: float
    ) -> List[PendingAck]:
        """Send `requests` framed and written together (see `LiftbridgeClient.publish_batch`)."""
        for request in requests:
            if not request.correlationId:
                request.correlationId = new_correlation_id()
        encoded = [self.encode(request) for request in requests]
        if not self.connections.open:
            return await self._outside(
                lambda session: session.send_batch(requests, encoded, timeout)
            )
        session = await self.session()
        return await session.send_batch(requests, encoded, timeout)

    async def publish_bulk(
        self, requests: Iterable[wire.PublishRequest], wait: bool
    ) -> AsyncGenerator[wire.PublishResponse, None]:
        """Pipeline `requests`, yielding their responses in order (see the client's)."""
        if self.connections.open:
            responses = self._pipeline(await self.session(), requests, wait)
            try:
                async for response in responses:
                    yield response
            finally:
                # Closed here, not left to the garbage collector (trio warns).
                await responses.aclose()
            return
        # Outside the client's block the iteration owns its connection. No
        # task group may be held across `yield` (see OutsideIteration): each
        # part of BULK_IN_FLIGHT requests goes over a stream of its own in
        # one step, and its responses are yielded after that step.
        iteration = self.connections.outside_iteration()
        requests_left = iter(requests)
        try:
            while True:
                part = list(itertools.islice(requests_left, BULK_IN_FLIGHT))
                if not part:
                    return
                received: List[wire.PublishResponse] = []
                async with iteration.step() as task_group:
                    session = await self._open_session(task_group)
                    pipeline = self._pipeline(session, part, wait)
                    try:
                        async for response in pipeline:
                            received.append(response)
                    finally:
                        # Closed here, not by the garbage collector (trio warns).
                        try:
                            await pipeline.aclose()
                        finally:
                            await session.aclose()
                for response in received:
                    yield response
                if session.timed_out:
                    return  # (wait=False: the pipeline stopped at an ack timeout)
        finally:
            await iteration.aclose()

    async def _pipeline(
        self, session: PublishSession, requests: Iterable[wire.PublishRequest], wait: bool
    ) -> AsyncGenerator[wire.PublishResponse, None]:
        # At most BULK_IN_FLIGHT requests await their acks: the iterable is
        # read only as acks come back, so an endless one works in bounded
        # memory. Acks are yielded in request order as soon as they are in.
        timeout = self.options.publish_async_ack_timeout
        in_flight: Deque[PendingAck] = deque()
        requests_left = iter(requests)
        while True:
            if len(in_flight) < BULK_IN_FLIGHT:
                request = next(requests_left, None)
                if request is not None:
                    if not request.correlationId:
                        request.correlationId = new_correlation_id()
                    encoded = self.encode(request)
                    in_flight.append(await session.send(request, encoded, timeout))
                    if not in_flight[0].done:
                        continue
            if not in_flight:
                return
            item = in_flight.popleft()
            try:
                ack = await item
            except ErrorAckTimeout:
                if wait:
                    raise
                session.timed_out = True
                return
            if ack is not None:
                yield wire.PublishResponse(ack=ack, correlationId=item.correlation_id)
