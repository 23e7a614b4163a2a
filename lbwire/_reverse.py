"""Reverse subscriptions: newest message first, down to the oldest.

Servers on liftbridge-api v2 (builds after v1.9.0) read a partition backwards
when SubscribeRequest.reverse is set, and end the call with UNKNOWN "EOF"
after the oldest message: that is the normal end (`is_reverse_end`). An empty
partition fails before the handshake with INTERNAL "Failed to create stream
reader". Liftbridge v1.9.0 ignores the field and streams forwards, so before
a broker's first reverse subscription a probe asks what it does (the answer
is cached per broker), and every subscription checks that offsets descend:
no message is ever delivered in the wrong order.

Stop positions are applied here, not by the server: it refuses a stop below
the start. A reverse subscription ends after the message at `stop_offset`
(inclusive), or before the first message older than `stop_timestamp`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import anyio

from . import wire
from ._address import Address, format_address
from ._log import LazyLogger
from ._resume import fail_at
from .error import (
    ErrorDeadlineExceeded,
    ErrorReverseUnsupported,
    ErrorUnavailable,
    LiftbridgeError,
)
from .error._decisions import (
    is_empty_partition_refusal,
    is_reverse_end,
    is_stop_reached,
    malformed_reply,
    subscribe_error,
)
from .grpc import GRPCError
from .types import Message
from .wire.messages import streamed_fields

if TYPE_CHECKING:
    from ._subscribe import Subscriptions

__all__ = [
    "ReverseSupport",
    "is_empty_partition_refusal",
    "is_reverse_end",
    "message_from_wire",
    "reverse_messages",
]

logger = LazyLogger("lbwire")

_SUBSCRIBE = "/proto.API/Subscribe"


def message_from_wire(msg: wire.Message) -> Message:
    """The `Message` a subscription, forward or reverse, hands out for a streamed one."""
    return Message(*streamed_fields(msg))


def unsupported(address: Address) -> ErrorReverseUnsupported:
    return ErrorReverseUnsupported(
        f"This server ({format_address(address)}) does not support reverse "
        "subscriptions: it ignores SubscribeRequest.reverse (Liftbridge v1.9.0 "
        "and older; the liftbridge-api v2 servers after it support them)"
    )


class ReverseSupport:
    """Whether each broker reads backwards, learnt from what it does.

    Args:
        subscriptions: For the router, the connections and the set-up timeout.
    """

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions
        self.known: Dict[Address, bool] = {}

    async def check(self, address: Address, stream: str, setup_timeout: float) -> None:
        """Raise ErrorReverseUnsupported if the broker ignores `reverse`.

        Known from before, or probed now (with fresh metadata of `stream`,
        whose partitions are the first candidates).
        """
        supported = self.known.get(address)
        if supported is None:
            await self.subscriptions.router.refresh(stream)
            supported = await self._probe(address, setup_timeout)
            if supported is not None:
                self.known[address] = supported
        if supported is False:
            raise unsupported(address)

    def learnt(self, address: Address, supported: bool) -> None:
        """Record what a subscription showed of the broker."""
        self.known[address] = supported

    def _probe_candidates(self, address: Address) -> Iterator[Tuple[str, int, bool]]:
        """Partitions the broker leads that can tell: (stream, partition, empty).

        An empty one (the newest server refuses it, v1.9.0 accepts it) or one
        whose newest offset is at least 1 (two messages unless retention
        removed the older ones).
        """
        metadata = self.subscriptions.router.metadata
        for name, stream in list(metadata.streams.items()):
            for number, partition in stream.partitions.items():
                if metadata.leader(name, number) != address:
                    continue
                if partition.newestOffset < 0:
                    yield name, number, True
                elif partition.newestOffset >= 1:
                    yield name, number, False

    async def _probe(self, address: Address, setup_timeout: float) -> Optional[bool]:
        """Ask the broker with a reverse read from the oldest message to the newest.

        A reverse reader yields the oldest message and ends (UNKNOWN "EOF");
        a forward one yields the oldest and the next. None: nothing decisive
        (no suitable partition); the subscription's order check remains.
        """
        for stream, partition, empty in self._probe_candidates(address):
            request = wire.SubscribeRequest(
                stream=stream,
                partition=partition,
                startPosition=wire.StartPosition.EARLIEST,
                reverse=True,
            )
            if not empty:
                request.stopPosition = wire.StopPosition.STOP_LATEST
            try:
                answer = await self._probe_once(address, request, empty, setup_timeout)
            except LiftbridgeError as exc:
                logger.debug("Reverse probe of %s failed: %s", format_address(address), exc)
                continue
            if answer is not None:
                logger.debug(
                    "Broker %s %s reverse subscriptions",
                    format_address(address),
                    "supports" if answer else "ignores",
                )
                return answer
        return None

    async def _probe_once(
        self,
        address: Address,
        request: wire.SubscribeRequest,
        empty: bool,
        setup_timeout: float,
    ) -> Optional[bool]:
        connections = self.subscriptions.connections
        connection = connections.take_subscription(address)
        offsets: List[int] = []
        try:
            with anyio.fail_after(setup_timeout):
                async with connection.channel.unary_stream(_SUBSCRIBE, request.encode()) as call:
                    await call.receive()  # the handshake
                    if empty:
                        # The newest server refuses an empty partition; unless
                        # a message came in since the metadata said empty.
                        router = self.subscriptions.router
                        await router.refresh(request.stream)
                        meta = router.metadata.partition(request.stream, request.partition)
                        if meta is not None and meta.newestOffset < 0:
                            return False
                        return None
                    async for data in call:
                        offsets.append(wire.Message.decode(data).offset)
                        if len(offsets) == 2:
                            return offsets[1] < offsets[0]
        except TimeoutError:
            raise ErrorDeadlineExceeded("Reverse probe got no answer") from None
        except wire.DecodeError as exc:
            raise malformed_reply(exc, method="Subscribe", broker=address) from None
        except GRPCError as exc:
            if is_reverse_end(exc) or (empty and is_empty_partition_refusal(exc)):
                return True
            if is_stop_reached(exc):
                return None  # one message only: both servers end the same way
            raise subscribe_error(
                exc, where="probe", handshake_done=False, explicit_stop_offset=False
            ) or ErrorUnavailable(exc.message) from None
        finally:
            connections.give_back(connection)
        return None


async def reverse_messages(
    subscriptions: Subscriptions,
    request: wire.SubscribeRequest,
    setup_timeout: Optional[float],
    *,
    stop_offset: Optional[int],
    stop_timestamp: Optional[int],
) -> AsyncIterator[Message]:
    """A reverse subscription's messages, newest first, resumed across broker failures.

    `request` carries the start position and no stop position; `stop_offset`
    (inclusive) and `stop_timestamp` (ns) end it here.
    """
    stream, partition = request.stream, request.partition
    router = subscriptions.router
    support = subscriptions.reverse_support
    request.reverse = True
    resumption = subscriptions.resumption(stream, partition, setup_timeout)
    resumption.kind = "Reverse subscription"
    last: Optional[int] = None  # offset of the last delivered message
    while True:
        if last is not None:
            if last == 0 or (stop_offset is not None and last - 1 < stop_offset):
                return
            request.startPosition = wire.StartPosition.OFFSET
            request.startOffset = last - 1
        error: Optional[LiftbridgeError] = None
        handshake_done = False
        address: Optional[Address] = None
        try:
            async with AsyncExitStack() as call_stack:
                # The set-up is bounded as forward subscriptions' is; the
                # bound ends before the first yield.
                with fail_at(resumption.setup_deadline()):
                    address = await router.subscription_broker(
                        stream, partition, request.readISRReplica
                    )
                    await support.check(address, stream, resumption.setup_bound)
                    connection = subscriptions.connections.take_subscription(address)
                    call_stack.callback(subscriptions.connections.give_back, connection)
                    call = await call_stack.enter_async_context(
                        connection.channel.unary_stream(_SUBSCRIBE, request.encode())
                    )
                    await call.receive()
                handshake_done = True
                resumption.set_up()
                previous: Optional[int] = None
                async for data in call:
                    msg = wire.Message.decode(data)
                    offset = msg.offset
                    if previous is not None and offset > previous:
                        # The server reads forwards: it ignored `reverse`.
                        support.learnt(address, False)
                        raise unsupported(address)
                    previous = offset
                    if last is not None and offset >= last:
                        continue  # already delivered before a resume
                    if stop_offset is not None and offset < stop_offset:
                        return
                    if stop_timestamp is not None and msg.timestamp < stop_timestamp:
                        return
                    yield message_from_wire(msg)
                    last = offset
            error = ErrorUnavailable(f"Server ended the reverse subscription to {resumption.where}")
        except TimeoutError:
            error = resumption.timed_out()
            if not resumption.set_up_once:
                raise error from resumption.last_error
        except wire.DecodeError as exc:
            assert address is not None  # messages come only from a chosen broker
            raise malformed_reply(exc, method="Subscribe", broker=address) from None
        except GRPCError as exc:
            if handshake_done and is_reverse_end(exc):
                if address is not None:
                    support.learnt(address, True)
                return
            refused = not handshake_done and is_empty_partition_refusal(exc)
            if refused and last is None:
                if address is not None:
                    support.learnt(address, True)
                return
            if refused:
                # Not empty, it delivered messages: a restarted server
                # refuses a partition so until it has loaded it.
                error = ErrorUnavailable(
                    f"The broker of {resumption.where} cannot read it yet: {exc.message}"
                )
            else:
                error = await subscriptions.call_error(
                    exc, request, handshake_done, explicit_stop_offset=False
                )
            if error is None:
                return
        except ErrorReverseUnsupported:
            raise
        except LiftbridgeError as exc:
            error = exc
        await resumption.failed(error, last)
