"""The one way lbwire's objects open and close the task group they own.

`LiftbridgeClient` and `Consumer` both run background tasks in a task group
of their own, opened on `__aenter__` and closed on `__aexit__`. Closing it
here keeps one rule for both: an exception raised by the user's code inside
the `async with` block comes out as itself. Handed to the task group, it
would come out wrapped in an ExceptionGroup, and `except ErrorNotFound:`
around the block would miss it.

A task that fails makes the group cancel the block; objects that name an
`owner` (the consumer-group member, the reader) then raise the task's error
out of the block unwrapped too (see `close_task_group`), and run their tasks
under `guarded`, so that an error of lbwire's own that is not a
`LiftbridgeError` comes out as `ErrorTaskFailed` naming the task.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, List, Optional, Type

import anyio

from ._log import LazyLogger
from .error import ErrorTaskFailed, LiftbridgeError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["close_task_group", "guarded", "open_task_group", "owned_task_group", "task_failure"]

logger = LazyLogger("lbwire")


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
    *,
    owner: Optional[str] = None,
) -> None:
    """Cancel the group's tasks and wait for them, keeping the block's own error.

    Cancellation from outside is passed on to the task group, which needs to
    see it; any other exception of the block propagates unwrapped, because
    the caller's `__aexit__` returns without suppressing it.

    With `owner` (what the group belongs to, for messages), a task's failure
    comes out unwrapped as well, by `task_failure`'s rule; when the block
    raised an error of its own, that error wins and the task's is logged.
    Without it, the task group's ExceptionGroup propagates as it is.
    """
    tg.cancel_scope.cancel()
    cancelled = anyio.get_cancelled_exc_class()
    own_error = exc is not None and not isinstance(exc, cancelled)
    try:
        if own_error:
            await tg.__aexit__(None, None, None)
        else:
            await tg.__aexit__(exc_type, exc, traceback)
    except BaseException as raised:
        if owner is None:
            raise
        failure = task_failure(raised, owner)
        if failure is None:
            raise  # a cancellation, or a group of them: it stays what it is
        if own_error:
            logger.error(
                "A task of %s failed while its block raised %r: %r",
                owner,
                exc,
                failure,
                exc_info=True,
            )
            return
        # The group stays reachable as __context__; the task's error is the news.
        raise failure from failure.__cause__


def task_failure(raised: BaseException, owner: str) -> Optional[BaseException]:
    """The one exception to raise for what a task group raised; None: raise it as it is.

    The rule, over the group's exceptions other than cancellations, first
    one first: an exception that is not an `Exception` (`SystemExit`,
    `KeyboardInterrupt`, a user's own `BaseException`, from a callback or a
    deserializer) comes out as itself; else the first `LiftbridgeError`;
    else the first exception, wrapped in `ErrorTaskFailed` naming `owner`.
    The others are logged. None when there are only cancellations, or
    `raised` is not a group.
    """
    if not hasattr(raised, "exceptions"):
        return None  # not a group (the backport's BaseExceptionGroup on 3.9 and 3.10)
    cancelled = anyio.get_cancelled_exc_class()
    failures = [e for e in _leaves(raised) if not isinstance(e, cancelled)]
    if not failures:
        return None
    chosen = next((e for e in failures if not isinstance(e, Exception)), None)
    if chosen is None:
        chosen = next((e for e in failures if isinstance(e, LiftbridgeError)), None)
    if chosen is None:
        first = failures[0]
        chosen = ErrorTaskFailed(f"A task of {owner} failed: {type(first).__name__}: {first}")
        chosen.__cause__ = first
        failures.remove(first)
    for other in failures:
        if other is not chosen:
            logger.error("Another task of %s failed too: %r", owner, other)
    return chosen


def _leaves(group: BaseException) -> List[BaseException]:
    found: List[BaseException] = []
    for inner in getattr(group, "exceptions", ()):
        found.extend(_leaves(inner) if hasattr(inner, "exceptions") else [inner])
    return found


async def guarded(what: str, func: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a background task's `func(*args)`; an error of lbwire's own names the task.

    A `LiftbridgeError`, a cancellation or anything else that is not an
    `Exception` passes through as it is; any other exception (a bug) becomes
    `ErrorTaskFailed("<what> failed: ...")` with the original as `__cause__`.
    """
    try:
        await func(*args)
    except LiftbridgeError:
        raise
    except Exception as exc:
        raise ErrorTaskFailed(f"{what} failed: {type(exc).__name__}: {exc}") from exc


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
