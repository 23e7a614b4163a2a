"""`PublishMethods`: the publishing methods `LiftbridgeClient` inherits.

They check their arguments and delegate to `lbwire._publish.Publisher`.
"""

from __future__ import annotations

from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    List,
    Optional,
    Tuple,
    Union,
)

import anyio

from . import wire
from ._checks import checked_publish_value
from ._publish import Publisher, new_correlation_id
from ._settle import SETTLE_HEADER, Settler
from .error import (
    ErrorDeadlineExceeded,
    ErrorInvalidArgument,
)
from .retry import call_budget
from .serde import BYTES, Serializer, resolve
from .types import Ack, AckPolicy, Partitioner

if TYPE_CHECKING:
    from ._room import InFlight
    from .options import ClientOptions
    from .publish import PendingAck


__all__ = ["PublishMethods"]


def _serialize(serializer: Serializer[Any], value: Any, what: str) -> bytes:
    """`serializer(value)`, or `ErrorInvalidArgument` saying why it could not be."""
    try:
        data = serializer(value)
    except Exception as exc:  # what a user's serializer raises is its own choice
        raise ErrorInvalidArgument(
            f"The {what} serializer refused {type(value).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ErrorInvalidArgument(
            f"The {what} serializer must return bytes, not {type(data).__name__}"
        )
    return bytes(data) if not isinstance(data, bytes) else data


class PublishMethods:
    """The publishing methods of `LiftbridgeClient` (which inherits them).

    Each checks its arguments and delegates to the client's `Publisher`.
    """

    _publisher: Publisher
    options: ClientOptions
    # Settled publishes' state, made on the first (`publish(settle=True)`).
    _settler: Optional[Settler] = None

    def get_publish_request(
        self,
        value: Any,
        *,
        stream: Optional[str] = None,
        key: Optional[Any] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        auto_compress: bool = False,
        expected_offset: Optional[int] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_serializer: Optional[Serializer[Any]] = None,
    ) -> wire.PublishRequest:
        """Build a PublishRequest, as `publish` would send it (for `publish_bulk`).

        The value and key go through the serializers, as in `publish`.

        Raises:
            ValueError: A bad value, header or ack policy.
        """
        value, key = self._serialized(value, key, value_serializer, key_serializer)
        return self._publisher.request(
            value,
            stream=stream,
            key=key,
            partition=partition,
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )

    async def publish(
        self,
        value: Any,
        *,
        stream: Optional[str] = None,
        key: Optional[Any] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        wait_for_stream: bool = False,
        auto_compress: bool = False,
        partitioner: Optional[Partitioner] = None,
        expected_offset: Optional[int] = None,
        ack_timeout: Optional[float] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_serializer: Optional[Serializer[Any]] = None,
        settle: bool = False,
    ) -> Optional[Ack]:
        """Publish one message and, unless the ack policy is NONE, wait for its ack.

        Time budget: the retry policy's for finding the leader and resending
        what was not sent; each try waits for its ack at most `ack_timeout`.

        Inside the client's block an acked publish travels on the client's
        long-lived PublishAsync stream, as go-liftbridge's does; with
        AckPolicy.NONE, an `ack_inbox`, or outside the block it is a unary
        Publish call (see docs/ARCHITECTURE.md). Both raise the same errors.

        Args:
            value: Payload: bytes, or what the value serializer takes.
            stream: Stream name.
            key: Message key (also what the key partitioner hashes, once
                serialized): bytes, or what the key serializer takes.
            partition: Partition; when None, the partitioner (argument or
                client default) chooses, else partition 0.
            headers: Message headers.
            ack_inbox: NATS subject for the ack (server-chosen if None).
            correlation_id: Id to correlate the ack with the message.
            ack_policy: LEADER, ALL or NONE.
            wait_for_stream: Retry while the stream does not exist yet (for
                at most the retry policy's `max_time`).
            auto_compress: Compress with the client's compression method.
            partitioner: Partitioner for this message.
            expected_offset: Optimistic concurrency: the offset the message
                must get (the stream must have it enabled).
            ack_timeout: Seconds to wait for the ack (client default if None).
            value_serializer: Turns `value` into bytes (`lbwire.serde`),
                instead of the client's `value_serializer`; `serde.BYTES`
                sends bytes as they are.
            key_serializer: The same for `key` (a None key stays absent).
            settle: lbwire addition: settle an ambiguous outcome (a lost ack
                or connection), so that the publish ends stored exactly
                once (the Ack) or raises `ErrorNotStored`. The stream must
                have optimistic concurrency control: each copy is fenced at
                one expected offset (the partition's next one unless
                `expected_offset` is given). The correlation id must be
                unique (None: a fresh one); the message carries it in the
                `lbwire-settle-id` header. Settling takes up to the retry
                policy's `max_time`. See docs/cookbook/publishing.md.

        Returns:
            The Ack, or None for AckPolicy.NONE.

        Raises:
            ValueError: Bad arguments, before anything is sent.
            ErrorMessageSizeExceeded: The message is larger than allowed.
            ErrorNotFound: No such stream or partition.
            ErrorReadonly: The partition is read-only.
            ErrorIncorrectOffset: `expected_offset` did not match.
            ErrorAckTimeout: No ack within the ack timeout.
            ErrorUnavailable: No broker could be reached, or the connection
                broke after the message went out: it may or may not be
                stored, and is not sent again (that could store it twice).
            ErrorNotStored: With `settle`: settled, the message is not stored
                (another message holds its offset).
            ErrorUnsettled: With `settle`: not settled in time; stored at
                most once, at its `offset` (an `ErrorAckTimeout`).
        """
        if not stream:
            raise ErrorInvalidArgument("publish needs a stream name")
        value, key = self._serialized(value, key, value_serializer, key_serializer)
        publisher = self._publisher
        if settle:
            return await self._publish_settled(
                value,
                stream=stream,
                key=key,
                partition=partition,
                headers=headers,
                ack_inbox=ack_inbox,
                correlation_id=correlation_id,
                ack_policy=ack_policy,
                auto_compress=auto_compress,
                partitioner=partitioner,
                expected_offset=expected_offset,
                ack_timeout=ack_timeout,
            )
        # Choosing the partition and publishing share one retry budget.
        with call_budget(publisher.router.policy):
            if partition is None and (partitioner or publisher.options.partitioner):
                partition = await publisher.partition(stream, key, value, partition, partitioner)
            request = publisher.request(
                value,
                stream=stream,
                key=key,
                partition=partition,
                headers=headers,
                ack_inbox=ack_inbox,
                correlation_id=correlation_id,
                ack_policy=ack_policy,
                auto_compress=auto_compress,
                expected_offset=expected_offset,
            )
            return await publisher.publish(request, ack_timeout, wait_for_stream)

    def _settling(self) -> Settler:
        """The client's `Settler`, made on first use."""
        settler = self._settler
        if settler is None:
            client: Any = self  # the client's subscribe and partition metadata
            settler = self._settler = Settler(
                self._publisher, client.get_partition_metadata, client.subscribe
            )
        return settler

    async def _publish_settled(
        self,
        value: bytes,
        *,
        stream: str,
        key: Optional[bytes],
        partition: Optional[int],
        headers: Optional[Dict[str, bytes]],
        ack_inbox: Optional[str],
        correlation_id: Optional[str],
        ack_policy: AckPolicy,
        auto_compress: bool,
        partitioner: Optional[Partitioner],
        expected_offset: Optional[int],
        ack_timeout: Optional[float],
    ) -> Ack:
        """`publish(settle=True)`: see `lbwire._settle`."""
        if ack_policy == AckPolicy.NONE:
            raise ErrorInvalidArgument(
                "settle needs an acked publish: AckPolicy.NONE gets no ack to settle "
                "(and a stream with concurrency control refuses it)"
            )
        if ack_inbox:
            raise ErrorInvalidArgument("settle takes no ack_inbox: lbwire must see the ack")
        publisher = self._publisher
        settler = self._settling()
        with call_budget(publisher.router.policy):
            if partition is None and (partitioner or publisher.options.partitioner):
                partition = await publisher.partition(stream, key, value, partition, partitioner)
        correlation_id = correlation_id or new_correlation_id()
        request = publisher.request(
            value,
            stream=stream,
            key=key,
            partition=partition,
            headers={**(headers or {}), SETTLE_HEADER: correlation_id.encode()},
            ack_inbox=None,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )
        settler.claim(correlation_id)
        return await settler.publish(
            request, ack_timeout, publisher.router.policy.max_time, expected_offset
        )

    async def publish_to_subject(
        self,
        value: Any,
        subject: str,
        *,
        key: Optional[Any] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_inbox: Optional[str] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        ack_timeout: Optional[float] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_serializer: Optional[Serializer[Any]] = None,
    ) -> Optional[Ack]:
        """Publish a Liftbridge message to a NATS subject (and the streams on it).

        Time budget: the retry policy's; the ack wait, `ack_timeout`. The
        value and key go through the serializers as in `publish`.

        Returns:
            The first Ack, or None for AckPolicy.NONE.

        Raises:
            ValueError: Bad arguments.
            ErrorAckTimeout: No ack within the ack timeout.
        """
        if not subject:
            raise ErrorInvalidArgument("publish_to_subject needs a subject")
        value, key = self._serialized(value, key, value_serializer, key_serializer)
        template = self._publisher.request(
            value,
            stream=None,
            key=key,
            partition=None,
            headers=headers,
            ack_inbox=ack_inbox,
            correlation_id=correlation_id,
            ack_policy=ack_policy,
            auto_compress=False,
            expected_offset=None,
        )
        request = wire.PublishToSubjectRequest(
            key=template.key,
            value=template.value,
            subject=subject,
            headers=template.headers,
            ackInbox=template.ackInbox,
            correlationId=template.correlationId,
            ackPolicy=template.ackPolicy,
        )
        return await self._publisher.publish_to_subject(request, ack_timeout)

    async def publish_async(
        self,
        value: Any,
        *,
        stream: str,
        key: Optional[Any] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        correlation_id: Optional[str] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        auto_compress: bool = False,
        partitioner: Optional[Partitioner] = None,
        expected_offset: Optional[int] = None,
        ack_timeout: Optional[float] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_serializer: Optional[Serializer[Any]] = None,
    ) -> PendingAck:
        """Send a message on the pipelined PublishAsync stream without waiting for its ack.

        Fire and forget: with AckPolicy.NONE it returns once the message is
        queued (go-liftbridge's semantics), takes no room in the bound and
        its PendingAck gives None. The server refuses such a message (a
        missing stream, say) without anyone to tell: the refusal goes to the
        client's `on_publish_error` callback (or the log) and is counted in
        `publish_errors`. `publish(..., ack_policy=AckPolicy.NONE)` instead
        waits for the server's reply and raises the refusal, as
        gufo-liftbridge's does. The value and key go through the serializers
        as in `publish` (`value_serializer`, `key_serializer`).

        Backpressure: an acked publish takes room in the client's bound on
        publishes in flight (`publish_async_max_pending` requests,
        `publish_async_max_pending_bytes` bytes) and gives it back when it is
        settled: acknowledged, refused, timed out or failed with its stream,
        whether or not anyone awaits it. When there is no room, this waits
        for some, first come first served, within the ack timeout. Cancelled
        while it waits, it leaves nothing behind and sends nothing.

        Time budget: sending, the retry policy's (opening the stream); the
        ack, `ack_timeout` after it was sent.

        Returns:
            An awaitable `PendingAck`: `await` it for the Ack (None for
            AckPolicy.NONE); it raises `PublishAsyncError` if the server
            refused the message and `ErrorAckTimeout` if no ack came in time.

        Raises:
            ErrorDeadlineExceeded: No room in the bound within the ack
                timeout; the message was not sent (`not_processed` is True).
        """
        value, key = self._serialized(value, key, value_serializer, key_serializer)
        publisher = self._publisher
        session = None
        if partition is None and (partitioner or publisher.options.partitioner):
            # Choosing the partition and opening the stream share one budget.
            with call_budget(publisher.router.policy):
                partition = await publisher.partition(stream, key, value, partition, partitioner)
                if publisher.connections.open:
                    session = await publisher.session()
        request = publisher.request(
            value,
            stream=stream,
            key=key,
            partition=partition,
            headers=headers,
            ack_inbox=None,
            correlation_id=correlation_id or new_correlation_id(),
            ack_policy=ack_policy,
            auto_compress=auto_compress,
            expected_offset=expected_offset,
        )
        # Sent from here rather than through one more coroutine: this is the
        # pipelined (per-message) path.
        encoded = publisher.encode(request)
        timeout = ack_timeout if ack_timeout is not None else self.options.publish_async_ack_timeout
        if not publisher.connections.open:
            return await publisher.send_outside(request, encoded, timeout)
        if session is None:
            session = publisher.open_session() or await publisher.session()
        return await session.send(request, encoded, timeout)

    async def publish_batch(
        self,
        messages: Iterable[Union[Any, wire.PublishRequest]],
        *,
        stream: Optional[str] = None,
        key: Optional[Any] = None,
        partition: Optional[int] = None,
        headers: Optional[Dict[str, bytes]] = None,
        ack_policy: AckPolicy = AckPolicy.LEADER,
        auto_compress: bool = False,
        partitioner: Optional[Partitioner] = None,
        ack_timeout: Optional[float] = None,
        value_serializer: Optional[Serializer[Any]] = None,
        key_serializer: Optional[Serializer[Any]] = None,
    ) -> List[PendingAck]:
        """Publish many messages at once on the PublishAsync stream; their awaitables, in order.

        The messages are encoded and framed in one pass and written
        together, as many at a time as the client's bound on publishes in
        flight allows (the call waits for room for the rest, as
        `publish_async` does). It returns once every message is sent, not
        acknowledged: await each `PendingAck`, or `flush()` and then read
        them. Messages on one partition are stored in the order given.

        Args:
            messages: Values (bytes, or what the value serializer takes),
                published with the arguments below,
                or PublishRequests (e.g. from `get_publish_request`), sent as
                they are; the two may be mixed.
            stream: Stream of the values (needed when there are values).
            key: Key of every value.
            partition: Partition of every value; when None, the partitioner
                (argument or client default) chooses for each, else 0.
            headers: Headers of every value.
            ack_policy: LEADER, ALL or NONE (nothing to await: see
                `publish_async` for where refusals go).
            auto_compress: Compress each value with the client's method.
            partitioner: Partitioner for the values.
            ack_timeout: Seconds to wait for each ack
                (`publish_async_ack_timeout` if None), room included.
            value_serializer: For the values, as in `publish`.
            key_serializer: For the key, as in `publish`.

        Returns:
            One `PendingAck` per message, in order. When the stream breaks
            meanwhile, the messages it took fail with `ErrorUnavailable` (they
            may be stored) and those after it with `ErrorUnavailable` whose
            `not_processed` is True; when no room comes within the ack
            timeout, the rest fail with `ErrorDeadlineExceeded`
            (`not_processed`).

        Raises:
            ValueError: Bad arguments or a message too large, before anything is sent.
            ErrorUnavailable: No PublishAsync stream could be opened.
        """
        publisher = self._publisher
        requests: List[wire.PublishRequest] = []
        template: Optional[wire.PublishRequest] = None
        choose = partitioner or publisher.options.partitioner
        count = 0
        _, key = self._serialized(b"", key, BYTES, key_serializer)
        values = resolve("value_serializer", value_serializer, self.options.value_serializer)
        for message in messages:
            if isinstance(message, wire.PublishRequest):
                requests.append(message)
                continue
            if values is not None:
                message = _serialize(values, message, "value")
            if not stream:
                raise ErrorInvalidArgument("publish_batch needs a stream name for its values")
            chosen = partition
            if chosen is None and choose is not None:
                if not count:
                    with call_budget(publisher.router.policy):
                        count = await publisher.router.partition_count(stream)
                chosen = choose(stream, key, bytes(message), count)
                if not 0 <= chosen < count:
                    raise ErrorInvalidArgument(
                        f"Partitioner chose partition {chosen} of {stream!r}, which has {count}"
                    )
            if auto_compress or template is None or (chosen or 0) != template.partition:
                # Checked and built in full once (and per value when compressed).
                template = publisher.request(
                    message,
                    stream=stream,
                    key=key,
                    partition=chosen,
                    headers=headers,
                    ack_inbox=None,
                    correlation_id=new_correlation_id(),
                    ack_policy=ack_policy,
                    auto_compress=auto_compress,
                    expected_offset=None,
                )
                requests.append(template)
                continue
            requests.append(
                wire.PublishRequest(
                    key=template.key,
                    value=checked_publish_value(message, key=None, headers=None, partition=None),
                    stream=stream,
                    partition=template.partition,
                    headers=template.headers,
                    correlationId=new_correlation_id(),
                    ackPolicy=template.ackPolicy,
                    expectedOffset=-1,
                )
            )
        timeout = ack_timeout if ack_timeout is not None else self.options.publish_async_ack_timeout
        return await publisher.publish_batch(requests, timeout)

    def _serialized(
        self,
        value: Any,
        key: Any,
        value_serializer: Optional[Serializer[Any]],
        key_serializer: Optional[Serializer[Any]],
    ) -> Tuple[bytes, Optional[bytes]]:
        """The value and key as bytes, through the call's serializers or else the client's."""
        options = self.options
        if (
            value_serializer is None
            and key_serializer is None
            and options.value_serializer is None
            and options.key_serializer is None
        ):
            return value, key  # bytes as they are (the default)
        values = resolve("value_serializer", value_serializer, options.value_serializer)
        if values is not None:
            value = _serialize(values, value, "value")
        keys = resolve("key_serializer", key_serializer, options.key_serializer)
        if keys is not None and key is not None:
            key = _serialize(keys, key, "key")
        return value, key

    @property
    def publish_errors(self) -> int:
        """Refusals that no awaiter received, since the client was made.

        Those of fire-and-forget publishes (`publish_async` or
        `publish_batch` with AckPolicy.NONE), and late ones of publishes
        whose awaiter gave up. Each also goes to the `on_publish_error`
        callback (or the log).
        """
        return self._publisher.unclaimed_errors

    @property
    def publish_in_flight(self) -> InFlight:
        """The acked publishes in flight now: `(requests, bytes)` (see `publish_async`)."""
        return self._publisher.room.snapshot()

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Wait until every publish in flight now is acknowledged or has failed.

        Publishes sent while it waits are not waited for. It does not raise
        the publishes' own errors: await their `PendingAck`s for those.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes
                (each publish settles by its ack timeout at the latest).

        Raises:
            ErrorDeadlineExceeded: Some publishes were still in flight after
                `timeout` seconds.
        """
        room = self._publisher.room
        with anyio.move_on_after(timeout):
            await room.drain()
            return
        requests, size = room.snapshot()
        raise ErrorDeadlineExceeded(
            f"flush: publishes still in flight after {timeout} s "
            f"({requests} in flight now, {size} bytes)"
        )

    async def publish_bulk(
        self, iter_req: Iterable[wire.PublishRequest], wait: bool = True
    ) -> AsyncIterator[wire.PublishResponse]:
        """Publish many requests pipelined on one PublishAsync stream.

        Time budget: opening the stream, the retry policy's; each ack, at
        most `publish_async_ack_timeout` after its request was sent.

        As in gufo-liftbridge, the items are PublishResponses: `item.ack`
        is the Ack. Requests with AckPolicy.NONE get no response.

        Args:
            iter_req: Requests, e.g. from `get_publish_request`.
            wait: Wait up to `publish_async_ack_timeout` for every ack and
                raise `ErrorAckTimeout` for a missing one; with False, a
                missing ack ends the iteration quietly instead.

        Yields:
            PublishResponses, in the order the requests were sent.

        Raises:
            PublishAsyncError: The server refused a message (gufo-liftbridge
                leaves these unreported).
            ErrorAckTimeout: With `wait`, an ack missing after
                `publish_async_ack_timeout`.
        """
        responses = self._publisher.publish_bulk(iter_req, wait)
        try:
            async for response in responses:
                yield response
        finally:
            await responses.aclose()  # not left to the garbage collector (trio warns)
