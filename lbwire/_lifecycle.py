"""The one way lbwire's objects open and close the task group they own.

`LiftbridgeClient` and `Consumer` both run background tasks in a task group
of their own, opened on `__aenter__` and closed on `__aexit__`. Closing it
here keeps one rule for both: an exception raised by the user's code inside
the `async with` block comes out as itself. Handed to the task group, it
would come out wrapped in an ExceptionGroup, and `except ErrorNotFound:`
around the block would miss it.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, AsyncIterator, Optional, Type

import anyio

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["close_task_group", "open_task_group", "owned_task_group"]


async def open_task_group() -> TaskGroup:
    """A task group entered now; close it with `close_task_group`."""
    tg = anyio.create_task_group()
    await tg.__aenter__()
    return tg


async def close_task_group(
    tg: TaskGroup,
    exc_type: Optional[Type[BaseException]],
    exc: Optional[BaseException],
    traceback: Optional[TracebackType],
) -> None:
    """Cancel the group's tasks and wait for them, keeping the block's own error.

    Cancellation from outside is passed on to the task group, which needs to
    see it; any other exception of the block propagates unwrapped, because
    the caller's `__aexit__` returns without suppressing it.
    """
    tg.cancel_scope.cancel()
    if exc is None or isinstance(exc, anyio.get_cancelled_exc_class()):
        await tg.__aexit__(exc_type, exc, traceback)
    else:
        await tg.__aexit__(None, None, None)


@asynccontextmanager
async def owned_task_group() -> AsyncIterator[TaskGroup]:
    """A task group for the length of an `async with` block, closed by the same rule.

    For calls made outside the client's block: they run their connection's
    tasks in a group of their own, and the block's error comes out as itself.
    """
    tg = await open_task_group()
    try:
        yield tg
    except BaseException as exc:
        await close_task_group(tg, type(exc), exc, exc.__traceback__)
        raise
    await close_task_group(tg, None, None, None)
