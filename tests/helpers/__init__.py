"""Helpers every test directory shares (``tests/`` is on sys.path via its conftest).

Import them as ``from helpers import aclosing, wait_until``. Test modules keep
no polling loops or context-manager copies of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Callable, Union

import anyio

#: How long a test waits for a state before it fails (a hang guard, not a timing claim).
HANG_GUARD = 30.0


@asynccontextmanager
async def aclosing(agen: Any) -> AsyncIterator[Any]:
    """`contextlib.aclosing` (Python 3.10+), for 3.9 (PyPy) too."""
    try:
        yield agen
    finally:
        await agen.aclose()


async def wait_until(
    condition: Callable[[], Union[bool, Awaitable[bool]]],
    what: str,
    *,
    timeout: float = HANG_GUARD,
    interval: float = 0.02,
) -> None:
    """Poll `condition` (sync or async) until it holds; fail after `timeout` s.

    For state that nothing announces (the server's view, another task's
    progress): there is no event to wait for, so the state itself is polled.
    """
    with anyio.move_on_after(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


class CallCounter:
    """Counts the unary calls of one API method that the client's channels send.

    Counted at the transport (`Channel.unary_unary`), each try included,
    with its start time (`anyio.current_time()`). Install with `install`.
    """

    def __init__(self, method: str) -> None:
        self.path = f"/proto.API/{method}"
        self.starts: list[float] = []

    def install(self, monkeypatch: Any) -> CallCounter:
        from lbwire.grpc import Channel

        real = Channel.unary_unary
        counter = self

        async def counting(channel: Any, path: str, request: bytes, **kwargs: Any) -> Any:
            if path == counter.path:
                counter.starts.append(anyio.current_time())
            return await real(channel, path, request, **kwargs)

        monkeypatch.setattr(Channel, "unary_unary", counting)
        return self

    def between(self, start: float, end: float) -> list[float]:
        """The start times of the calls in [start, end)."""
        return [t for t in self.starts if start <= t < end]
