"""`ClientObserver`: what a `LiftbridgeClient` reports that its public API does not show.

Retries, reconnects, resubscribes and the acks of pipelined publishes happen
inside the client. A client whose `observer` attribute holds an object with
these methods calls them where each event happens; `lbwire.otel.instrument`
installs one that turns them into OpenTelemetry metrics. This module imports
nothing, so the client can name the protocol without importing OpenTelemetry.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

__all__ = ["ClientObserver", "ObserverSlot"]


class ClientObserver(Protocol):
    """Receives the client's internal events.

    The client calls these from the task where the event happens, on hot
    paths too (an ack per pipelined message): they must return quickly and
    must not raise.
    """

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        """A call failed with `error` and is tried again.

        Args:
            method: The Liftbridge API method (`FetchMetadata`, `Publish`...).
            attempt: Failures so far (1 after the first).
            error: Why the last try failed.
        """

    def on_reconnect(self, broker: str) -> None:
        """A connection to `broker` (`host:port`) was made again after one was lost."""

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        """A subscription lost its broker or leader (`error`) and resumes elsewhere."""

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        """The ack of a pipelined publish arrived, `latency` seconds after it was sent."""


class ObserverSlot:
    """Where the parts of one client find its observer (`LiftbridgeClient.observer`).

    Read at each event, so an observer installed after the client started
    (or removed) takes effect at once.
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Optional[ClientObserver] = None

    def retry_reporter(self, method: str) -> Optional[Callable[[int, BaseException], None]]:
        """What `lbwire.retry.retrying` calls before trying `method` again, if observed."""
        observer = self.current
        if observer is None:
            return None

        def report(attempt: int, error: BaseException) -> None:
            observer.on_retry(method, attempt, error)

        return report
