"""Metadata refreshes are single-flight: concurrent callers share one FetchMetadata."""

from __future__ import annotations

import socket
import traceback

import anyio
import pytest
from helpers import CallCounter, wait_until

from lbwire import wire
from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorUnavailable
from lbwire.retry import RetryPolicy, call_budget
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio


async def test_many_concurrent_refreshes_send_one_fetch_metadata(
    client: LiftbridgeClient, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = client._router  # noqa: SLF001 (the refreshes the client's parts make)
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    everything: list[wire.FetchMetadataResponse] = []
    answers: list[wire.FetchMetadataResponse] = []

    async def refresh(*streams: str) -> None:
        (answers if streams else everything).append(await router.refresh(*streams))

    async with anyio.create_task_group() as tg:
        # A refresh of one stream is served by the one of all streams.
        for _ in range(50):
            tg.start_soon(refresh, stream)
            tg.start_soon(refresh)
    assert len(counter.starts) == 1
    assert len(answers) == len(everything) == 50
    assert all(answer is everything[0] for answer in everything)
    # Each caller gets the streams it asked for.
    assert {tuple(s.name for s in answer.streamMetadata) for answer in answers} == {(stream,)}


async def test_a_caller_that_saw_an_error_after_a_fetch_began_gets_a_newer_fetch(
    client: LiftbridgeClient, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = client._router  # noqa: SLF001
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    first = await router.refresh()
    error_seen = anyio.current_time()
    # The fetch above started before the error: it cannot serve this caller.
    second = await router.refresh(since=error_seen)
    assert second is not first
    assert len(counter.starts) == 2
    assert counter.starts[1] >= error_seen
    # A later caller whose error preceded the second fetch shares its answer.
    assert await router.refresh(since=error_seen) is second
    assert len(counter.starts) == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    client: LiftbridgeClient, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = client._router  # noqa: SLF001
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    answers: list[object] = []
    started = anyio.Event()

    async def starter() -> None:
        with anyio.CancelScope() as scope:
            starter_scope.append(scope)
            started.set()
            await router.refresh()

    async def waiter() -> None:
        answers.append(await router.refresh())

    starter_scope: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(starter)
        await started.wait()
        for _ in range(5):
            tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        # The caller running the fetch is cancelled: a waiter takes over.
        starter_scope[0].cancel()
    assert len(answers) == 5
    assert 1 <= len(counter.starts) <= 2


async def refresh_together_at_a_refusing_port(callers: int) -> list[ErrorUnavailable]:
    """What `callers` concurrent refreshes raise when no broker accepts connections."""
    failures: list[ErrorUnavailable] = []

    async def refresh(client: LiftbridgeClient) -> None:
        try:
            await client._router.refresh()  # noqa: SLF001
        except ErrorUnavailable as exc:
            failures.append(exc)

    # A loopback port that refuses connections (bound, not listening).
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        broker = f"127.0.0.1:{refusing.getsockname()[1]}"
        policy = RetryPolicy(attempts=1)
        async with (
            LiftbridgeClient([broker], retry_policy=policy) as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(callers):
                tg.start_soon(refresh, client)
    return failures


async def test_a_failed_fetch_fails_every_caller_it_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    failures = await refresh_together_at_a_refusing_port(20)
    assert len(failures) == 20
    assert len(counter.starts) == 1


async def test_each_caller_of_a_failed_fetch_gets_an_exception_of_its_own() -> None:
    # One exception object raised in twenty tasks would gather every task's
    # frames in its traceback (and keep them alive with the last fetch).
    failures = await refresh_together_at_a_refusing_port(20)
    assert len({id(failure) for failure in failures}) == 20
    for failure in failures:
        frames = traceback.extract_tb(failure.__traceback__)
        routers = [f for f in frames if f.filename.endswith("_routing.py") and f.name == "refresh"]
        assert len(routers) == 1
    # The callers' exceptions say the same, and lead to the fetch's own
    # (raised in the fetch's task, in none of theirs).
    (fetched,) = {id(f.__cause__): f.__cause__ for f in failures}.values()
    assert isinstance(fetched, ErrorUnavailable)
    assert fetched not in failures
    assert {(type(f), str(f), f.status) for f in failures} == {
        (type(fetched), str(fetched), fetched.status)
    }


@pytest.mark.parametrize("inside_block", [True, False])
async def test_a_shared_fetch_retries_with_its_own_budget_not_its_starters(
    fresh_server: LiftbridgeServer, monkeypatch: pytest.MonkeyPatch, inside_block: bool
) -> None:
    # The caller that starts a fetch has spent its budget (a refresh nested
    # deep in a publish); a caller with a fresh budget waits for the same
    # fetch. The broker is down at the fetch's first try, and back later.
    counter = CallCounter("FetchMetadata").install(monkeypatch)
    policy = RetryPolicy(attempts=100, max_backoff=0.5, max_time=60)
    client = LiftbridgeClient([fresh_server.broker], retry_policy=policy)
    router = client._router  # noqa: SLF001
    answers: list[wire.FetchMetadataResponse] = []

    async def spent_starter() -> None:
        with call_budget(router.policy) as budget:
            budget.failures = budget.attempts
            answers.append(await router.refresh())

    async def waiter() -> None:
        answers.append(await router.refresh())

    async def run() -> None:
        fresh_server.stop()
        async with anyio.create_task_group() as tg:
            tg.start_soon(spent_starter)
            await wait_until(lambda: len(counter.starts) >= 1, "the fetch is sent")
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            # With the starter's budget, the fetch would fail for both.
            await anyio.to_thread.run_sync(fresh_server.start)

    if inside_block:
        async with client:
            await run()
    else:
        await run()
    assert len(answers) == 2
    assert answers[0] is answers[1]
