"""When a connection sends keepalive PINGs: plain arithmetic over a clock.

Kept apart from the channel's task (which only sleeps, pings and waits) so
that tests can play hours of a connection's life without waiting.

A keepalive PING is sent after ``interval`` seconds in which nothing was
received, while calls are in progress (a quiet subscription is the case it is
for: a broker that died, or a path that silently drops packets, is otherwise
only noticed when TCP gives up, after a quarter of an hour or more). Without
calls, only if asked to, and then seldom enough for grpc-go servers.

grpc-go servers (Liftbridge's) enforce a policy on their clients' PINGs
(``internal/transport/http2_server.go``, ``handlePing``; defaults): a PING
that comes less than ``MinTime`` (5 minutes) after the previous one, while
calls are in progress, is a strike; without calls, one that comes less than 2
hours after the previous one is. Anything the server sends (headers, data,
trailers) clears the strikes. The third strike in a row gets GOAWAY
ENHANCE_YOUR_CALM "too_many_pings" and the connection, with its calls, is
closed. Since the next PING is due ``interval`` after the last byte received,
the previous PING's answer included, PINGs reach the server more than
``interval`` apart: an interval of at least 5 minutes never strikes.
"""

from __future__ import annotations

import math

__all__ = [
    "GRPC_GO_MIN_PING_INTERVAL",
    "GRPC_GO_MIN_PING_INTERVAL_WITHOUT_CALLS",
    "IDLE_PING_INTERVAL",
    "SAFE_KEEPALIVE_TIME",
    "KeepalivePolicy",
    "KeepaliveSchedule",
]

#: grpc-go's default ``EnforcementPolicy.MinTime``: the shortest interval
#: between PINGs while calls are in progress.
GRPC_GO_MIN_PING_INTERVAL = 300.0
#: grpc-go's shortest interval between PINGs without calls in progress
#: (``PermitWithoutStream`` false, the default: ``defaultPingTimeout``).
GRPC_GO_MIN_PING_INTERVAL_WITHOUT_CALLS = 2 * 3600.0
#: A keepalive interval that respects grpc-go's default policy with room to
#: spare: 10 s above it absorb a clock that runs fast (NTP slews by up to
#: 500 ppm) and timer jitter.
SAFE_KEEPALIVE_TIME = GRPC_GO_MIN_PING_INTERVAL + 10.0
#: The shortest interval between PINGs on a connection without calls, when
#: ``keepalive_without_calls`` is set.
IDLE_PING_INTERVAL = GRPC_GO_MIN_PING_INTERVAL_WITHOUT_CALLS + 60.0


class KeepaliveSchedule:
    """Decides when a connection sends its next keepalive PING.

    Times are seconds on one monotonic clock. The connection reports what
    happens (:meth:`received`, :meth:`pinged`) and asks :meth:`next_ping`.

    Args:
        interval: seconds without receiving anything before a PING.
        without_calls: also ping while no call is in progress (then at most
            every :data:`IDLE_PING_INTERVAL`).
        now: the time the connection opened.

    """

    __slots__ = ("interval", "last_ping", "last_received", "without_calls")

    def __init__(self, interval: float, *, without_calls: bool, now: float) -> None:
        self.interval = interval
        self.without_calls = without_calls
        self.last_received = now
        self.last_ping = -math.inf

    def received(self, now: float) -> None:
        """Bytes arrived from the peer (a PING's answer included)."""
        self.last_received = now

    def pinged(self, now: float) -> None:
        """A PING was sent."""
        self.last_ping = now

    def next_ping(self, calls_in_progress: bool) -> float:
        """When the next PING is due (``math.inf``: none while nothing changes)."""
        due = self.last_received + self.interval
        if calls_in_progress:
            return due
        if not self.without_calls:
            return math.inf
        return max(due, self.last_ping + max(self.interval, IDLE_PING_INTERVAL))


class KeepalivePolicy:
    """A channel's keepalive settings, shared by its connections over time.

    Args:
        time: seconds without receiving anything (while calls are in
            progress) before a PING.
        timeout: seconds to wait for a PING's answer.
        without_calls: also ping without calls in progress.

    """

    __slots__ = ("time", "timeout", "without_calls")

    def __init__(self, time: float, timeout: float, *, without_calls: bool) -> None:
        self.time = time
        self.timeout = timeout
        self.without_calls = without_calls

    def too_many_pings(self) -> None:
        """The server sent GOAWAY "too_many_pings": ping half as often, as grpc clients do."""
        self.time *= 2
