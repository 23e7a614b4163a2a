"""Helpers shared by the activity tests (imported as ``activity_support``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import anyio
from helpers import HANG_GUARD, aclosing

from lbwire.activity import ACTIVITY_STREAM, ActivityEvent
from lbwire.client import LiftbridgeClient


async def next_activity_offset(client: LiftbridgeClient) -> int:
    """The offset the next activity event will get."""
    partition = await client.get_partition_metadata(ACTIVITY_STREAM, 0)
    return partition.newest_offset + 1


async def take(
    events: Any, count: int, keep: Callable[[ActivityEvent], bool] = lambda e: True
) -> list[ActivityEvent]:
    """The first `count` events `keep` accepts; closes the iterator."""
    out: list[ActivityEvent] = []
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(events) as iterator:
            async for event in iterator:
                if keep(event):
                    out.append(event)
                    if len(out) == count:
                        break
    return out


def about(*names: str) -> Callable[[ActivityEvent], bool]:
    """Accept events about these streams or consumer groups."""

    def keep(event: ActivityEvent) -> bool:
        return getattr(event, "stream", None) in names or getattr(event, "group_id", None) in names

    return keep


def content(event: ActivityEvent) -> ActivityEvent:
    """The event with offset, id and timestamp zeroed: its kind and fields."""
    return dataclasses.replace(event, offset=0, id=0, timestamp=0)


async def raw_value(client: LiftbridgeClient, offset: int) -> bytes:
    """The encoded event stored at `offset` of ``__activity``."""
    with anyio.fail_after(HANG_GUARD):
        async with aclosing(client.subscribe(ACTIVITY_STREAM, start_offset=offset)) as messages:
            async for message in messages:
                return bytes(message.value)
    raise AssertionError(f"no message at {ACTIVITY_STREAM} offset {offset}")
