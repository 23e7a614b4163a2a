"""An observer of settled publishes (`publish(settle=True)`)."""

from __future__ import annotations

from typing import List

__all__ = ["Resends"]


class Resends:
    """An observer that counts the resends of settled publishes."""

    def __init__(self) -> None:
        self.errors: List[BaseException] = []

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        if method == "PublishSettled":
            self.errors.append(error)

    def on_reconnect(self, broker: str) -> None:
        pass

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        pass

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        pass
