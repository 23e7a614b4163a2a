"""`lbwire._turns.Turns`: the writers' lock of a PublishAsync stream (no server)."""

from __future__ import annotations

from typing import Awaitable, Callable, List

import anyio
import pytest

from lbwire._turns import Turns

pytestmark = pytest.mark.anyio

#: A turn never handed on would leave its waiters waiting: fail, not hang.
HANG_GUARD = 10.0


async def test_waiters_get_their_turns_in_the_order_they_came() -> None:
    turns = Turns()
    order: List[int] = []
    assert turns.try_take()

    async def writer(n: int) -> None:
        async with turns:
            order.append(n)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(writer, n)
            await anyio.wait_all_tasks_blocked()
        assert not turns.try_take()  # taken, and others wait
        turns.give_back()
    assert order == [0, 1, 2, 3, 4]
    assert not turns.taken
    assert turns.try_take()


async def test_a_waiter_cancelled_before_its_turn_holds_nothing() -> None:
    turns = Turns()
    assert turns.try_take()
    with anyio.move_on_after(0.01):
        await turns.take()
    turns.give_back()
    assert not turns.taken


@pytest.mark.parametrize("cancel_first", [True, False])
async def test_a_turn_handed_to_a_cancelled_waiter_passes_on(cancel_first: bool) -> None:
    # The turn is handed over (the waiter's event set) in the same pass that
    # cancels the waiter. Cancelled first, the waiter never runs with it and
    # must pass it on; handed over first, it may take its turn (its wait
    # ended before the cancellation came). Either way the next waiter gets a
    # turn and nothing is left holding one.
    turns = Turns()
    assert turns.try_take()
    got: List[str] = []

    async def waiter(name: str, scopes: List[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await turns.take()
            got.append(name)
            turns.give_back()

    scopes: List[anyio.CancelScope] = []
    with anyio.fail_after(HANG_GUARD):
        await handed_on(scopes, cancel_first, turns, waiter)
    if cancel_first:
        assert got == ["second"]
    else:
        assert got[-1] == "second"
    assert not turns.taken


async def handed_on(
    scopes: List[anyio.CancelScope],
    cancel_first: bool,
    turns: Turns,
    waiter: Callable[[str, List[anyio.CancelScope]], Awaitable[None]],
) -> None:
    """Two waiters; the turn handed to the first in the pass that cancels it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first", scopes)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "second", scopes)
        await anyio.wait_all_tasks_blocked()
        if cancel_first:
            scopes[0].cancel()
            turns.give_back()
        else:
            turns.give_back()
            scopes[0].cancel()
