"""Which broker a call goes to, and the calls that retry until it answers.

The router owns the metadata cache: it refreshes it after routing errors (as
Liftbridge's client-implementation guide prescribes), looks partition
leaders up in it, and picks a broker for calls any broker can serve. Every
unary call of the client goes through `call`, `call_any` or `call_leader`.

Refreshes are single-flight: one FetchMetadata is in flight at a time, and
every caller it can serve shares its answer or its failure (see `refresh`).
So when a broker dies under a thousand subscriptions, the refreshes follow
the outage, not the number of subscriptions.
"""

from __future__ import annotations

import copy
import math
import random
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    FrozenSet,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Type,
    TypeVar,
)

import anyio

from . import wire
from ._address import Address, format_address
from ._log import LazyLogger
from .error import (
    ErrorDeadlineExceeded,
    ErrorNotFound,
    ErrorNotLeader,
    ErrorPartitionPaused,
    ErrorUnavailable,
    LiftbridgeError,
    from_grpc_error,
)
from .error._decisions import decode_reply, more_hopeful, no_broker_reachable
from .grpc import GRPCError
from .metadata import MetadataCache
from .partitioning import cursor_partition
from .retry import (
    Backoff,
    RetryPolicy,
    budget_deadline,
    call_budget,
    is_transient,
    own_budget,
    retrying,
)

if TYPE_CHECKING:
    from ._pool import ConnectionRegistry
    from .grpc import Channel

__all__ = ["CURSOR_STREAM", "Router"]

logger = LazyLogger("lbwire")

CURSOR_STREAM = "__cursors"

_API = "/proto.API/"
_R = TypeVar("_R")

#: Shortest time (s) between the starts of two FetchMetadata calls of one
#: client: what the callers of a refresh wait at most beyond the call
#: itself, and what bounds the calls a client sends in an outage.
MIN_REFRESH_INTERVAL = 0.05

#: Seconds a unary call waits for an answer beyond the deadline it sends.
ANSWER_GRACE = 0.5

#: How long after its connection was reopened a broker may call a stream the
#: client saw exist missing before that is believed: a restarted server
#: accepts calls before it has loaded its streams.
LOADING_GRACE = 10.0


class _Fetch:
    """One FetchMetadata, shared by every caller it serves.

    `streams` empty means all streams. Once `done` is set, `response` or
    `error` holds the outcome; neither does when the caller running it was
    cancelled, and a waiter then starts another.
    """

    __slots__ = ("done", "error", "response", "sent", "started", "streams")

    def __init__(self, streams: FrozenSet[str], started: float) -> None:
        self.streams = streams
        self.started = started
        # Until the request is sent, callers may widen `streams`.
        self.sent = False
        self.done = anyio.Event()
        self.response: Optional[wire.FetchMetadataResponse] = None
        self.error: Optional[LiftbridgeError] = None

    def widen(self, streams: FrozenSet[str]) -> None:
        """Ask for `streams` too (empty: all), before the request is sent."""
        self.streams = self.streams | streams if self.streams and streams else frozenset()

    def serves(self, streams: FrozenSet[str], since: float) -> bool:
        """Whether its answer may be given to a caller asking for `streams` since `since`.

        It must have started at or after `since` (a caller that saw a routing
        error needs an answer given after it), and cover the streams asked
        for: an "all streams" fetch covers any.
        """
        if self.started < since:
            return False
        return not self.streams or (bool(streams) and streams <= self.streams)

    def outcome(self) -> Optional[wire.FetchMetadataResponse]:
        """The answer, the failure raised (a copy of its own), or None if it never finished."""
        error = self.error
        if error is not None:
            # One object raised in every caller would gather all their
            # frames in its traceback, and keep them alive with the last
            # fetch: each caller gets a copy, whose cause is the original.
            raise copy.copy(error) from error
        return self.response


def _narrowed(
    response: wire.FetchMetadataResponse, wanted: FrozenSet[str], fetched: FrozenSet[str]
) -> wire.FetchMetadataResponse:
    """The answer to a caller who asked for `wanted` (empty: all) from a wider fetch."""
    if not wanted or wanted == fetched:
        return response
    return wire.FetchMetadataResponse(
        brokers=response.brokers,
        streamMetadata=[s for s in response.streamMetadata if s.name in wanted],
        groupMetadata=response.groupMetadata,
    )


class Router:
    """Broker choice, leader lookup, metadata refresh and the retrying call helpers.

    Args:
        seeds: The brokers given to the client.
        connections: The client's connection registry.
        policy: Bounds of the retries.
        rpc_timeout: Default deadline of unary calls (s).
    """

    def __init__(
        self,
        seeds: Sequence[Address],
        connections: ConnectionRegistry,
        *,
        policy: RetryPolicy,
        rpc_timeout: float,
    ) -> None:
        self.seeds = list(seeds)
        self.connections = connections
        self.policy = policy
        self.rpc_timeout = rpc_timeout
        self.metadata = MetadataCache()
        # The broker that calls any broker can serve go to while its
        # connection is open (see any_broker).
        self._any_address: Optional[Address] = None
        # The refresh in flight, and the last one that finished (see refresh).
        self._fetch: Optional[_Fetch] = None
        self._last_fetch: Optional[_Fetch] = None
        self._last_start = -math.inf
        # Streams this client saw exist (in its metadata before an update,
        # or a publish reached them): see `loading`.
        self._seen: Set[str] = set()

    # ------------------------------------------------------------------ broker choice

    def any_broker(self) -> Address:
        """The broker for a call any broker can serve (a publish, metadata...).

        The one chosen last, as long as its connection is open; else the
        first of `candidates()`, which shuffles and sorts, too much work to
        repeat for every publish.
        """
        address = self._any_address
        if address is not None and self.connections.is_connected(address):
            return address
        address = self._any_address = self.candidates()[0]
        return address

    def any_brokers(self) -> Iterator[Address]:
        """`any_broker()`, then the other candidates should it fail."""
        first = self.any_broker()
        yield first
        for address in self.candidates():
            if address != first:
                self._any_address = address
                yield address

    def candidates(self) -> List[Address]:
        """Brokers to try for a call any broker can serve: known ones first."""
        known = self.metadata.addresses()
        random.shuffle(known)
        seeds = list(self.seeds)
        random.shuffle(seeds)
        # Brokers with an open connection first: they answer fastest. A
        # connection whose broker died is kept but is not connected.
        connected = self.connections.is_connected
        return sorted(dict.fromkeys(known + seeds), key=lambda a: not connected(a))

    async def subscription_broker(self, stream: str, partition: int, allow_isr: bool) -> Address:
        """The broker to subscribe at: the leader, or a random in-sync replica."""
        if allow_isr:
            if self.metadata.partition(stream, partition) is None:
                await self.refresh(stream)
            address = self.metadata.random_isr(stream, partition)
            if address is not None:
                return address
        return await self.leader(stream, partition)

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        address: Address,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float],
        send_deadline: bool = True,
    ) -> _R:
        """One unary call to one broker; gRPC errors become lbwire exceptions.

        `request` is a wire message or its encoding. With `send_deadline`
        false, `timeout` bounds the call on this side only and the server sees
        a call without deadline.

        `method` is a method of `proto.API`, or another service's full path
        (`/service/Method`).
        """
        connections = self.connections
        if not connections.open:
            # Outside the client's block: a connection of the call's own.
            async with connections.short_lived(address) as channel:
                return await self._call_on(
                    channel, address, method, request, response_type, timeout, send_deadline
                )
        return await self._call_on(
            connections.channel(address),
            address,
            method,
            request,
            response_type,
            timeout,
            send_deadline,
        )

    async def _call_on(
        self,
        channel: Channel,
        address: Address,
        method: str,
        request: Any,
        response_type: Type[_R],
        timeout: Optional[float],
        send_deadline: bool,
    ) -> _R:
        payload = request if type(request) is bytes else request.encode()
        # A method of another service (the health check) comes as its full path.
        path = method if method[0] == "/" else _API + method
        try:
            if send_deadline:
                # A broker that waits for something (a metadata leader) until
                # the deadline answers just as it passes: waiting a little
                # longer gets that answer instead of a deadline error.
                data = await channel.unary_unary(path, payload, timeout=timeout, grace=ANSWER_GRACE)
            else:
                with anyio.fail_after(timeout):
                    data = await channel.unary_unary(path, payload)
        except TimeoutError:
            raise ErrorDeadlineExceeded(
                f"{method} to {format_address(address)} got no answer within {timeout} s"
            ) from None
        except GRPCError as exc:
            error = from_grpc_error(exc)
            if isinstance(error, ErrorDeadlineExceeded):
                # The transport's own text names neither the call nor the broker.
                error = ErrorDeadlineExceeded(
                    f"{method} to {format_address(address)} got no answer within {timeout} s",
                    status=exc.status,
                )
            raise error from None
        return decode_reply(response_type, data, method=method, broker=address)

    async def call_any(
        self,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float] = None,
        send_deadline: bool = True,
    ) -> _R:
        """A call any broker can serve: brokers are cycled on Unavailable."""

        async def call(address: Address) -> _R:
            return await self.call(
                address,
                method,
                request,
                response_type,
                timeout=timeout or self.rpc_timeout,
                send_deadline=send_deadline,
            )

        return await self.on_any_broker(method, call)

    async def on_any_broker(self, what: str, action: Callable[[Address], Awaitable[_R]]) -> _R:
        """`action(address)` on any broker: brokers are cycled on Unavailable, within the policy.

        Raises:
            ErrorUnavailable: No broker could do it before the policy gave up.
        """

        async def attempt(failures: int) -> _R:
            last: Optional[LiftbridgeError] = None
            for address in self.any_brokers():
                try:
                    return await action(address)
                except ErrorUnavailable as exc:
                    logger.debug("%s to %s failed: %s", what, format_address(address), exc)
                    last = more_hopeful(last, exc)
            assert last is not None
            raise last

        try:
            return await retrying(
                attempt, self.policy, on_retry=self.connections.observers.retry_reporter(what)
            )
        except ErrorUnavailable as exc:
            raise no_broker_reachable(exc, self.seeds) from exc

    async def call_leader(
        self,
        stream: str,
        partition: int,
        method: str,
        request: Any,
        response_type: Type[_R],
        *,
        timeout: Optional[float] = None,
    ) -> _R:
        """A call the partition leader must serve: metadata is refreshed on routing errors.

        A "no such stream" (or partition) is retried too, within the retry
        policy, while the broker that said so may still be loading the
        stream after a restart (see `loading`): it stored nothing.
        """
        failed_at: Optional[float] = None
        loading = False

        async def attempt(failures: int) -> _R:
            nonlocal failed_at, loading
            loading = False
            try:
                address = await self.leader(
                    stream, partition, refresh=failures > 0, since=failed_at
                )
            except LiftbridgeError as exc:
                # Fresh metadata that names no leader (an election under
                # way): the next try needs an answer newer than this one.
                failed_at = anyio.current_time()
                # (Metadata a restarted broker answered may lack the stream.)
                loading = isinstance(exc, ErrorNotFound) and self.loading(stream)
                raise
            try:
                return await self.call(
                    address, method, request, response_type, timeout=timeout or self.rpc_timeout
                )
            except ErrorNotFound:
                failed_at = anyio.current_time()
                loading = self.loading(stream, address)
                raise
            except ErrorNotLeader as exc:
                failed_at = anyio.current_time()
                meta = self.metadata.partition(stream, partition)
                if failures > 0 and meta is not None and meta.paused:
                    # The leader of a paused partition does not lead it until
                    # it is resumed: retrying cannot help.
                    raise ErrorPartitionPaused(
                        f"Partition {stream!r}/{partition} is paused; publishing to it "
                        f"or subscribing with resume=True resumes it (server: {exc})",
                        status=exc.status,
                    ) from None
                raise
            except LiftbridgeError:
                failed_at = anyio.current_time()
                raise

        def retry_if(error: LiftbridgeError) -> bool:
            return is_transient(error) or (loading and isinstance(error, ErrorNotFound))

        return await retrying(
            attempt,
            self.policy,
            retry_if=retry_if,
            on_retry=self.connections.observers.retry_reporter(method),
        )

    def saw(self, stream: str) -> None:
        """Remember that `stream` exists (a publish of this client reached it)."""
        self._seen.add(stream)

    def forget(self, stream: str) -> None:
        """Forget `stream`, which this client deleted: a "no such stream" about it is believed."""
        self._seen.discard(stream)

    def loading(self, stream: str, address: Optional[Address] = None) -> bool:
        """Whether a broker may call `stream` missing only because it is still loading it.

        True when this client saw the stream exist (in its metadata, or a
        publish reached it) and the connection of `address` (without one:
        of any broker, for an answer routed through metadata) was reopened
        within `LOADING_GRACE`: a restarted server accepts calls before it
        has loaded its streams.
        """
        if stream not in self._seen and self.metadata.partition_count(stream) is None:
            return False  # never seen, or deleted by this client
        connections = self.connections
        if address is None:
            return connections.any_reconnected_within(LOADING_GRACE)
        return connections.reconnected_within(address, LOADING_GRACE)

    async def call_cursor_leader(
        self,
        stream: str,
        partition: int,
        cursor_id: str,
        method: str,
        request: Any,
        response_type: Type[_R],
    ) -> _R:
        """A cursor call: it goes to the leader of the cursor's `__cursors` partition."""
        # Finding the cursor's partition and calling its leader share one budget.
        with call_budget(self.policy):
            count = await self.partition_count(CURSOR_STREAM)
            target = cursor_partition(cursor_id, stream, partition, count)
            return await self.call_leader(CURSOR_STREAM, target, method, request, response_type)

    # ------------------------------------------------------------------ metadata

    async def refresh(
        self, *streams: str, since: Optional[float] = None
    ) -> wire.FetchMetadataResponse:
        """Fetch metadata (of `streams`, or of all) into the cache; single-flight.

        A caller shares the FetchMetadata in flight when it covers the streams
        asked for and started at or after `since` (None: any in flight will
        do). With `since`, the last finished fetch is enough too if it
        started after `since`: a caller that saw a routing error at `since`
        needs an answer given after the error, not a second one. Otherwise
        the caller waits for the fetch in flight to end and starts the next
        one, at least `MIN_REFRESH_INTERVAL` after the previous one began;
        callers arriving before its request is sent widen it to their streams.
        A shared fetch's failure is raised in every caller it served.

        The fetch belongs to none of its callers: it runs in a task of the
        client's task group, with a retry budget of its own (the policy's),
        so a caller's deadline or spent budget ends only that caller's wait.
        Outside the client's block there is no such task group: the caller
        that starts the fetch runs it (still with a budget of its own), and
        if it is cancelled, a waiter starts a new one. Within a public call,
        a caller waits no longer than the call's budget.

        Raises:
            ErrorUnavailable: No broker answered within the retry policy.
        """
        wanted = frozenset(streams)
        not_before = -math.inf if since is None else since
        # A caller waits no longer than its own call's budget.
        with anyio.CancelScope(deadline=budget_deadline()):  # (no move_on_at before anyio 4.16)
            while True:
                fetch = self._fetch
                if fetch is None:
                    last = self._last_fetch
                    if since is not None and last is not None and last.serves(wanted, since):
                        response = last.outcome()
                        assert response is not None
                        return _narrowed(response, wanted, last.streams)
                    fetch = self._start_fetch(wanted)
                    task_group = self.connections.task_group
                    if task_group is None:
                        with own_budget():
                            await self._run_fetch(fetch, owned=False)
                    else:
                        task_group.start_soon(self._run_fetch, fetch, True)
                elif not fetch.sent and fetch.started >= not_before:
                    fetch.widen(wanted)
                await fetch.done.wait()
                if fetch.serves(wanted, not_before):
                    response = fetch.outcome()
                    if response is not None:
                        return _narrowed(response, wanted, fetch.streams)
                # Not for us, or its caller was cancelled: the next one.
        raise ErrorUnavailable("No metadata within the retry budget of the call")

    def _start_fetch(self, wanted: FrozenSet[str]) -> _Fetch:
        """The next shared fetch, at least `MIN_REFRESH_INTERVAL` after the last one began."""
        started = max(anyio.current_time(), self._last_start + MIN_REFRESH_INTERVAL)
        self._last_start = started
        fetch = self._fetch = _Fetch(wanted, started)
        return fetch

    async def _run_fetch(self, fetch: _Fetch, owned: bool) -> None:
        """Run a shared fetch (see `refresh`); its outcome goes to `fetch`, never raised.

        `owned`: it runs in a task of the client's task group, which is
        cancelled only when the client closes.
        """
        try:
            # Callers arriving during this pause join the fetch.
            await anyio.sleep_until(fetch.started)
            fetch.sent = True
            streams = fetch.streams
            # No deadline on the wire: a broker without a fresh broker list
            # asks every Raft member and, with a member down, waits for it
            # until the call's deadline, so a sent rpc_timeout would make it
            # answer just as the client gives up.
            response = await self.call_any(
                "FetchMetadata",
                wire.FetchMetadataRequest(streams=list(streams)),
                wire.FetchMetadataResponse,
                send_deadline=False,
            )
            # Known before the update: a restarted broker's answer may lack
            # streams it has not loaded yet (see `loading`).
            self._seen.update(self.metadata.streams)
            self.metadata.update(response, streams)
            fetch.response = response
        except LiftbridgeError as exc:
            fetch.error = exc
        except anyio.get_cancelled_exc_class():
            if owned:
                # The client is closing: its waiters must not start another.
                fetch.error = ErrorUnavailable("The client was closed during a metadata refresh")
            raise
        finally:
            self._fetch = None
            if fetch.response is not None or fetch.error is not None:
                self._last_fetch = fetch
            fetch.done.set()

    async def refresh_quietly(self, *streams: str, since: Optional[float] = None) -> None:
        """`refresh()`, logging instead of raising (before a retry)."""
        try:
            await self.refresh(*streams, since=since)
        except LiftbridgeError as exc:
            logger.debug("Metadata refresh failed: %s", exc)

    async def leader(
        self, stream: str, partition: int, *, refresh: bool = False, since: Optional[float] = None
    ) -> Address:
        """Address of a partition's leader, from the cache or fresh metadata.

        `since`: with `refresh`, when the routing error that calls for fresh
        metadata was seen (see `refresh`).
        """
        address = None if refresh else self.metadata.leader(stream, partition)
        if address is None:
            await self.refresh(stream, since=since)
            address = self.metadata.leader(stream, partition)
        if address is None:
            if self.metadata.partition_count(stream) is None:
                raise ErrorNotFound(f"No such stream: {stream!r}")
            if self.metadata.partition(stream, partition) is None:
                raise ErrorNotFound(f"No such partition: {stream!r} has no partition {partition}")
            raise ErrorUnavailable(f"Partition {stream!r}/{partition} has no leader yet")
        return address

    async def partition_count(self, stream: str) -> int:
        """Number of partitions of `stream`, from the cache or fresh metadata."""
        count = self.metadata.partition_count(stream)
        if count is None:
            await self.refresh(stream)
            count = self.metadata.partition_count(stream)
        if count is None:
            raise ErrorNotFound(f"No such stream: {stream!r}")
        return count

    async def partition_paused(self, stream: str, partition: int) -> bool:
        """Whether fresh metadata says the partition is paused.

        v1.9.0 keeps reporting a partition paused after it was resumed, so
        only a "no" is certain; callers use this to explain an error.
        """
        try:
            await self.refresh(stream)
        except LiftbridgeError:
            return False
        meta = self.metadata.partition(stream, partition)
        return meta is not None and meta.paused

    async def broker_address(self, broker_id: str) -> Address:
        """Address of a broker by id, from the cache or fresh metadata."""
        address = self.metadata.brokers.get(broker_id)
        if address is None:
            await self.refresh()
            address = self.metadata.brokers.get(broker_id)
        if address is None:
            raise ErrorUnavailable(f"Broker {broker_id!r} is not in the cluster metadata")
        return address

    async def wait_for_stream(
        self, stream: Optional[str], timeout: Optional[float]
    ) -> wire.FetchMetadataResponse:
        """Refresh until `stream` (or every stream, if None) is ready; the last answer.

        The pauses between refreshes grow as the retry policy's backoff. A
        refresh that reaches no broker within the policy does not end the
        wait: the next one follows after a pause.

        Raises:
            ErrorDeadlineExceeded: Not ready within `timeout` s (None: no
                bound); its cause is the last refresh's failure, if any.
        """
        streams = [stream] if stream else []
        backoff = Backoff(self.policy)
        checked = None
        last: Optional[LiftbridgeError] = None
        with anyio.move_on_after(timeout):
            while True:
                try:
                    # The wait's bound is `timeout`, not a call's budget.
                    with own_budget():
                        response = await self.refresh(*streams, since=checked)
                except LiftbridgeError as exc:
                    if not exc.transient:
                        raise
                    last = exc
                else:
                    if self.stream_ready(stream):
                        return response
                checked = anyio.current_time()
                await backoff.wait()
        what = f"Stream {stream!r} was" if stream else "The streams were"
        message = f"{what} not ready within {timeout} s"
        if last is not None:
            message += f" (last refresh: {last})"
        raise ErrorDeadlineExceeded(message) from last

    def stream_ready(self, stream: Optional[str]) -> bool:
        """Whether the cache knows `stream` (or every stream) with a leader per partition."""
        streams = self.metadata.streams
        metas = [streams.get(stream)] if stream else list(streams.values())
        return bool(metas) and all(
            m is not None and m.partitions and all(p.leader for p in m.partitions.values())
            for m in metas
        )
