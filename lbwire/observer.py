"""`ClientObserver`: what a `LiftbridgeClient` reports that its public API does not show.

Retries, reconnects, resubscribes and the acks of pipelined publishes happen
inside the client. A client whose `observer` attribute holds an object with
these methods calls them where each event happens; `lbwire.otel.instrument`
installs one that turns them into OpenTelemetry metrics. This module imports
nothing else, so the client can name the protocol without importing OpenTelemetry.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, Set

from ._log import LazyLogger

__all__ = ["ClientObserver", "ObserverSlot"]

logger = LazyLogger("lbwire")


class ClientObserver(Protocol):
    """Receives the client's internal events.

    The client calls these from the task where the event happens, on hot
    paths too (an ack per pipelined message): they must return quickly.
    An exception one raises is caught and logged (once per method and
    observer), never raised into the client's work.
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
    (or removed) takes effect at once. `current` is the installed observer
    behind a guard that catches what it raises: observers never break the
    data path.
    """

    __slots__ = ("_guarded", "installed")

    def __init__(self) -> None:
        #: The observer as installed (what `LiftbridgeClient.observer` returns).
        self.installed: Optional[ClientObserver] = None
        self._guarded: Optional[_Guarded] = None

    @property
    def current(self) -> Optional[ClientObserver]:
        """The installed observer, guarded; None when there is none."""
        return self._guarded

    @current.setter
    def current(self, observer: Optional[ClientObserver]) -> None:
        self.installed = observer
        self._guarded = None if observer is None else _Guarded(observer)

    def retry_reporter(self, method: str) -> Optional[Callable[[int, BaseException], None]]:
        """What `lbwire.retry.retrying` calls before trying `method` again, if observed."""
        observer = self.current
        if observer is None:
            return None

        def report(attempt: int, error: BaseException) -> None:
            observer.on_retry(method, attempt, error)

        return report


class _Guarded:
    """An observer whose exceptions are logged (once per method) instead of raised."""

    __slots__ = ("_failed", "_observer")

    def __init__(self, observer: ClientObserver) -> None:
        self._observer = observer
        self._failed: Set[str] = set()

    def _raised(self, method: str) -> None:
        if method not in self._failed:
            self._failed.add(method)
            logger.warning(
                "The client's observer %r raised in %s (ignored; logged once)",
                self._observer,
                method,
                exc_info=True,
            )

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        try:
            self._observer.on_retry(method, attempt, error)
        except Exception:
            self._raised("on_retry")

    def on_reconnect(self, broker: str) -> None:
        try:
            self._observer.on_reconnect(broker)
        except Exception:
            self._raised("on_reconnect")

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        try:
            self._observer.on_resubscribe(stream, partition, error)
        except Exception:
            self._raised("on_resubscribe")

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        try:
            self._observer.on_ack(stream, partition, latency)
        except Exception:
            self._raised("on_ack")
