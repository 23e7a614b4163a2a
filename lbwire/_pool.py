"""The client's connections: one registry of every broker connection, and its reaper.

Each broker has one connection for every call but Subscribe, and a pool of
up to `max_per_broker` connections that Subscribe calls share (Liftbridge's
client guide: a pool of 2 by default). Each is one `BrokerConnection`
record; one task closes the records no call has used for `idle_timeout`
seconds, whatever their purpose. A closed connection reopens on the next
call (the channel reconnects by itself after a break).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import (
    TYPE_CHECKING,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    List,
    NamedTuple,
    Optional,
)

import anyio

from ._address import Address, format_address
from ._lifecycle import owned_task_group
from ._log import LazyLogger
from .observer import ObserverSlot

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .grpc import Channel, ChannelConfig

__all__ = ["BrokerConnection", "ConnectionInfo", "ConnectionRegistry", "OutsideIteration"]

logger = LazyLogger("lbwire")


class ConnectionInfo(NamedTuple):
    """A snapshot of one of the client's connections (see `LiftbridgeClient.connection_info`).

    Attributes:
        broker: The broker's `host:port`.
        for_subscriptions: True for a pooled Subscribe connection, False for
            the connection of every other call.
        connected: Whether its HTTP/2 connection is open right now.
        subscriptions: Subscriptions using it (0 for the other one).
    """

    broker: str
    for_subscriptions: bool
    connected: bool
    subscriptions: int


class BrokerConnection:
    """One connection to a broker: its channel, its purpose and when it was last used."""

    # A plain class: `dataclasses` adds to `import lbwire.client`.
    __slots__ = (
        "address",
        "channel",
        "ever_connected",
        "for_subscriptions",
        "last_used",
        "reconnected_at",
        "reconnecting",
        "subscriptions",
    )

    def __init__(self, address: Address, channel: Channel, *, for_subscriptions: bool) -> None:
        self.address = address
        self.channel = channel
        self.for_subscriptions = for_subscriptions
        self.subscriptions = 0
        self.last_used = anyio.current_time()
        # Whether a call found the connection open, and when a call last
        # found it broken after that (the channel then connects again).
        self.ever_connected = False
        self.reconnected_at: Optional[float] = None
        self.reconnecting = False

    def taken(self, now: float) -> bool:
        """A call takes the connection now; return whether it must connect again."""
        self.last_used = now
        if self.channel.connected:
            self.ever_connected = True
            self.reconnecting = False
        elif self.ever_connected:
            self.reconnected_at = now
            if not self.reconnecting:
                self.reconnecting = True
                return True
        return False

    def idle_since(self, now: float) -> Optional[float]:
        """Seconds without a call, or None while a call uses the connection."""
        if self.subscriptions or self.channel.active_calls:
            return None
        return now - self.last_used


class ConnectionRegistry:
    """Every connection of one client, by broker; the only owner of its channels.

    Args:
        config: Settings of every channel.
        max_per_broker: Most pooled Subscribe connections to one broker.
        idle_timeout: Close connections unused this long (None: never).
    """

    #: Test hook: how channels are made, `(host, port, task_group=, config=)`
    #: like `lbwire.grpc.Channel` (None: that class). Tests set it to wrap
    #: the real channel; nothing else should.
    channel_factory: Optional[Callable[..., Channel]] = None

    def __init__(
        self, config: ChannelConfig, *, max_per_broker: int, idle_timeout: Optional[float]
    ) -> None:
        self.config = config
        self.max_per_broker = max_per_broker
        self.idle_timeout = idle_timeout
        self._calls: Dict[Address, BrokerConnection] = {}
        self._pools: Dict[Address, List[BrokerConnection]] = {}
        self._task_group: Optional[TaskGroup] = None
        self._listeners: List[Callable[[str], None]] = []
        #: The client's observer (`LiftbridgeClient.observer`), for every part.
        self.observers = ObserverSlot()
        #: Called by the idle reaper before each look, `(now, idle_timeout)`:
        #: parts that keep a stream open (the PublishAsync session) end it
        #: when it is idle, so that its connection can be closed as well.
        self.idle_hooks: List[Callable[[float, float], Awaitable[None]]] = []

    def start(self, task_group: TaskGroup) -> None:
        """Make connections in `task_group` from now on; start the idle reaper."""
        self._task_group = task_group
        if self.idle_timeout is not None:
            task_group.start_soon(self._close_idle, self.idle_timeout)

    def stop(self) -> None:
        """Refuse new connections (the task group is closing)."""
        self._task_group = None

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """Call `callback("host:port")` whenever a call takes a connection."""
        self._listeners.append(callback)

    def _taken(self, address: Address) -> None:
        for callback in self._listeners:
            callback(format_address(address))

    @property
    def task_group(self) -> Optional[TaskGroup]:
        """The client's task group while its block is open (else None)."""
        return self._task_group

    @property
    def open(self) -> bool:
        """Whether the client's block is open (else calls bring their own connections)."""
        return self._task_group is not None

    def _new_channel(self, address: Address) -> Channel:
        task_group = self._task_group
        if task_group is None:
            scope = _outside_scope.get()
            if scope is None:
                raise RuntimeError(
                    "LiftbridgeClient is not open: use 'async with LiftbridgeClient(...) as client'"
                )
            # One connection per broker for the scope's calls: a resumed
            # subscription, or the next part of a bulk publish, reuses it.
            channel = scope.channels.get(address)
            if channel is None:
                channel = scope.channels[address] = self.detached_channel(address, scope.task_group)
                if scope.lending:
                    channel.lend(scope.task_group)
            return channel
        return self.detached_channel(address, task_group)

    def detached_channel(self, address: Address, task_group: TaskGroup) -> Channel:
        """A new channel whose tasks run in `task_group`, not kept here: its owner closes it."""
        factory = type(self).channel_factory
        if factory is None:
            # The transport (h2, ssl) is imported with the first channel, not
            # with the client module.
            from .grpc import Channel

            factory = Channel
        return factory(address[0], address[1], task_group=task_group, config=self.config)

    @asynccontextmanager
    async def short_lived(self, address: Address) -> AsyncIterator[Channel]:
        """A connection of its own for one call made outside the client's block.

        Its tasks run in a task group of the call's; both end when the block
        ends, so nothing outlives the call.
        """
        if self._listeners:
            self._taken(address)
        async with owned_task_group() as task_group:
            channel = self.detached_channel(address, task_group)
            try:
                yield channel
            finally:
                with anyio.CancelScope(shield=True):
                    await channel.aclose()

    def scope_channel(self, address: Address) -> Channel:
        """A new channel of the current `outside_scope`, closed when it ends."""
        return self._new_channel(address)

    @asynccontextmanager
    async def outside_scope(self) -> AsyncIterator[TaskGroup]:
        """Connections for an iterator used outside the client's block (a subscription).

        Subscribe connections taken inside are the scope's own, not pooled,
        and closed when it ends. Yields the task group of the scope, or, inside
        the client's block, the client's.
        """
        if self._task_group is not None:
            yield self._task_group
            return
        async with owned_task_group() as task_group:
            scope = _OutsideScope(task_group, {}, lending=False)
            token = _outside_scope.set(scope)
            try:
                yield task_group
            finally:
                _outside_scope.reset(token)
                await _close_all(scope.channels)

    def outside_iteration(self) -> OutsideIteration:
        """Connections for an async generator used outside the client's block.

        See `OutsideIteration`: unlike `outside_scope`, it holds no task
        group while the generator yields.
        """
        return OutsideIteration()

    def channel(self, address: Address) -> Channel:
        """The broker's connection for every call but Subscribe."""
        if self._listeners:
            self._taken(address)
        record = self._calls.get(address)
        if record is None:
            record = BrokerConnection(address, self._new_channel(address), for_subscriptions=False)
            self._calls[address] = record
        elif record.taken(anyio.current_time()):
            observer = self.observers.current
            if observer is not None:
                observer.on_reconnect(format_address(address))
        return record.channel

    def reconnected_within(self, address: Address, seconds: float) -> bool:
        """Whether the broker's call connection broke and was reopened in the last `seconds`.

        A server that restarted answers before it has loaded its streams:
        a stream it calls missing on such a connection may be loading still.
        """
        record = self._calls.get(address)
        if record is None or record.reconnected_at is None:
            return False
        return anyio.current_time() - record.reconnected_at <= seconds

    def any_reconnected_within(self, seconds: float) -> bool:
        """Whether any broker's call connection was reopened in the last `seconds` (see above)."""
        now = anyio.current_time()
        return any(
            record.reconnected_at is not None and now - record.reconnected_at <= seconds
            for record in self._calls.values()
        )

    def is_connected(self, address: Address) -> bool:
        """Whether the broker's (non-Subscribe) connection is open right now."""
        record = self._calls.get(address)
        return record is not None and record.channel.connected

    def take_subscription(self, address: Address) -> BrokerConnection:
        """A pooled connection for one Subscribe call; return it with `give_back`.

        An idle pooled connection, else a new one while the pool is below
        its limit, else the least busy one.
        """
        if self._listeners:
            self._taken(address)
        if self._task_group is None:
            # Outside the client's block: a connection of the caller's scope.
            own = BrokerConnection(address, self._new_channel(address), for_subscriptions=True)
            own.subscriptions += 1
            return own
        pool = self._pools.setdefault(address, [])
        record = min(pool, key=lambda r: r.subscriptions, default=None)
        if record is None or (record.subscriptions and len(pool) < self.max_per_broker):
            record = BrokerConnection(address, self._new_channel(address), for_subscriptions=True)
            pool.append(record)
        record.subscriptions += 1
        return record

    def give_back(self, record: BrokerConnection) -> None:
        """A subscription taken with `take_subscription` ended."""
        record.subscriptions -= 1
        record.last_used = anyio.current_time()

    def info(self) -> List[ConnectionInfo]:
        """A snapshot of every connection (for tests and diagnostics)."""
        records = list(self._calls.values())
        records += [r for pool in self._pools.values() for r in pool]
        return [
            ConnectionInfo(
                format_address(r.address), r.for_subscriptions, r.channel.connected, r.subscriptions
            )
            for r in records
        ]

    async def aclose(self) -> None:
        """Close every connection; calls in progress fail, later calls reconnect."""
        records = list(self._calls.values())
        records += [r for pool in self._pools.values() for r in pool]
        self._calls, self._pools = {}, {}
        with anyio.CancelScope(shield=True):
            for record in records:
                await record.channel.aclose()

    async def _close_idle(self, idle_timeout: float) -> None:
        """Close connections no call used for `idle_timeout` s (they reopen on use)."""
        while True:
            await anyio.sleep(idle_timeout / 4)
            for hook in self.idle_hooks:
                await hook(anyio.current_time(), idle_timeout)
            now = anyio.current_time()
            idle: List[BrokerConnection] = []
            for address, record in list(self._calls.items()):
                idle_for = record.idle_since(now)
                if idle_for is not None and idle_for >= idle_timeout:
                    del self._calls[address]
                    idle.append(record)
            for address, pool in list(self._pools.items()):
                for record in list(pool):
                    idle_for = record.idle_since(now)
                    if idle_for is not None and idle_for >= idle_timeout:
                        pool.remove(record)
                        idle.append(record)
                if not pool:
                    del self._pools[address]
            for record in idle:
                logger.debug(
                    "Closing an idle %s connection to %s",
                    "subscription" if record.for_subscriptions else "call",
                    format_address(record.address),
                )
                await record.channel.aclose()


class OutsideIteration:
    """The connections of an async generator used outside the client's block.

    gufo-liftbridge lets a program iterate a subscription without the
    client's `async with`, and leave the loop with `break` and no `aclose`.
    Then the generator is finalized later, on asyncio from another task: a
    task group (or cancel scope) it held across `yield` would be exited in
    the wrong task and cancel whatever that task runs (PEP 789). So the
    generator runs each wait in `step()`, whose task group runs its
    connections' tasks for that wait only, and yields outside it; the
    connections stay open between steps (`Channel.lend`) until `aclose`.
    """

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: Dict[Address, Channel] = {}

    @asynccontextmanager
    async def step(self) -> AsyncIterator[TaskGroup]:
        """Run the connections (new ones included) until the block ends; yield its task group."""
        async with owned_task_group() as task_group:
            channels = self._channels
            for channel in channels.values():
                channel.lend(task_group)
            token = _outside_scope.set(_OutsideScope(task_group, channels, lending=True))
            try:
                yield task_group
            finally:
                _outside_scope.reset(token)
                for channel in channels.values():
                    channel.unlend()

    async def aclose(self) -> None:
        """Close the connections (no step may run meanwhile or after)."""
        channels, self._channels = self._channels, {}
        await _close_all(channels)


async def _close_all(channels: Dict[Address, Channel]) -> None:
    with anyio.CancelScope(shield=True):
        for channel in channels.values():
            await channel.aclose()


class _OutsideScope:
    """The task group and channels of calls made outside the client's block.

    `lending`: the task group lasts one step of an `OutsideIteration` only.
    """

    __slots__ = ("channels", "lending", "task_group")

    def __init__(
        self, task_group: TaskGroup, channels: Dict[Address, Channel], *, lending: bool
    ) -> None:
        self.task_group = task_group
        self.channels = channels
        self.lending = lending


_outside_scope: ContextVar[Optional[_OutsideScope]] = ContextVar(
    "lbwire_outside_scope", default=None
)
