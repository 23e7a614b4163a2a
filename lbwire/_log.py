"""Loggers that import :mod:`logging` on first use.

`logging` (with the `traceback`, `string` and `threading` it pulls in) is
9 ms of a 30 ms `import lbwire.client` (-X importtime, 2-core dev VM), and
lbwire logs only on rare paths (retries, fail-overs). The transport's h2
imports it anyway with the first connection.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LazyLogger"]


class LazyLogger:
    """Stands for ``logging.getLogger(name)``; records name the caller's line."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def _get(self) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self._name)
        return logger

    def debug(self, msg: str, *args: object) -> None:
        self._get().debug(msg, *args, stacklevel=2)

    def info(self, msg: str, *args: object) -> None:
        self._get().info(msg, *args, stacklevel=2)

    def warning(self, msg: str, *args: object, exc_info: bool = False) -> None:
        self._get().warning(msg, *args, stacklevel=2, exc_info=exc_info)
