"""Observers of retries: of settled publishes (`publish(settle=True)`), or of any call."""

from __future__ import annotations

from typing import List, Type

__all__ = ["Resends", "Retries"]


class Retries:
    """An observer that keeps the errors (of `kind`) after which `method` was tried again."""

    def __init__(self, method: str, kind: Type[BaseException] = BaseException) -> None:
        self.method = method
        self.kind = kind
        self.errors: List[BaseException] = []

    def on_retry(self, method: str, attempt: int, error: BaseException) -> None:
        if method == self.method and isinstance(error, self.kind):
            self.errors.append(error)

    def on_reconnect(self, broker: str) -> None:
        pass

    def on_resubscribe(self, stream: str, partition: int, error: BaseException) -> None:
        pass

    def on_ack(self, stream: str, partition: int, latency: float) -> None:
        pass


class Resends(Retries):
    """An observer that counts the resends of settled publishes."""

    def __init__(self) -> None:
        super().__init__("PublishSettled")
