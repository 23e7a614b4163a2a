"""A restarted server calls its streams missing until it has loaded them.

It accepts calls before it has loaded its streams from disk, and meanwhile
answers "no such stream" about streams that exist. A leader call about a
stream the client saw exist asks again, within the retry policy, while the
broker's connection was reopened lately (`Router.loading`), rather than
raising ErrorNotFound; a stream this client deleted is believed at once.
"""

from __future__ import annotations

import contextlib
from contextlib import asynccontextmanager
from typing import AsyncIterator, List, Tuple

import anyio
import pytest
from helpers.settled import Retries

from lbwire import LiftbridgeClient
from lbwire.error import ErrorNotFound, LiftbridgeError
from lbwire.retry import RetryPolicy
from lbwire.testing import LiftbridgeServer

pytestmark = pytest.mark.anyio

#: Quick tries, and enough of them to outlast the restart and the loading.
PATIENT = RetryPolicy(attempts=400, initial_backoff=0.01, max_backoff=0.05, max_time=25.0)
#: Streams besides the one asked about, so that loading them takes a while.
FILLER = 40


@asynccontextmanager
async def watched_client(
    server: LiftbridgeServer, stream: str
) -> AsyncIterator[Tuple[LiftbridgeClient, Retries]]:
    """A patient client with `stream` created, and the "not found" answers it asked again after."""
    retries = Retries("FetchPartitionMetadata", ErrorNotFound)
    async with LiftbridgeClient([server.broker], retry_policy=PATIENT) as client:
        client.observer = retries  # type: ignore[assignment]
        await client.create_stream(stream, wait_for_stream=True)
        yield client, retries


async def lookups_across_a_restart(
    client: LiftbridgeClient, server: LiftbridgeServer, stream: str
) -> List[LiftbridgeError]:
    """Look the partition up over and over while `server` is killed and restarted.

    Until three lookups after the restart succeeded; returns what the
    lookups raised (one ends them).
    """
    failures: List[LiftbridgeError] = []
    restarted = anyio.Event()
    asked = 0

    async def ask() -> None:
        nonlocal asked
        while not restarted.is_set() or asked < 3:
            try:
                info = await client.get_partition_metadata(stream, 0)
            except LiftbridgeError as exc:
                failures.append(exc)
                return
            assert info.id == 0
            if restarted.is_set():
                asked += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await server.akill()
        await server.astart()
        restarted.set()
    return failures


async def test_a_stream_a_restarted_server_has_not_loaded_yet_is_asked_about_again(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with watched_client(fresh_server, stream_name) as (client, retries):
        for i in range(FILLER):
            # Only there to make loading take longer: one the server fails to
            # create in time (the newest server's raft operation timed out
            # once under CI's load) is left out.
            with contextlib.suppress(LiftbridgeError):
                await client.create_stream(f"{stream_name}-filler-{i}")
        await client.get_partition_metadata(stream_name, 0)
        # The server says "not found" only in a short window after it starts:
        # restart it until a lookup lands in that window (every lookup, in
        # the window or not, must find the stream).
        for _ in range(8):
            failures = await lookups_across_a_restart(client, fresh_server, stream_name)
            assert failures == []
            if retries.errors:
                break
        else:
            pytest.fail("no lookup reached the restarted server before it loaded the stream")


async def test_a_stream_the_client_deleted_is_not_asked_about_again(
    fresh_server: LiftbridgeServer, stream_name: str
) -> None:
    async with watched_client(fresh_server, stream_name) as (client, retries):
        await client.publish(b"x", stream=stream_name)
        await fresh_server.akill()
        await fresh_server.astart()
        # Reconnected (so within the grace) and the stream loaded.
        await client.publish(b"y", stream=stream_name)
        await client.delete_stream(stream_name)
        with pytest.raises(ErrorNotFound):
            await client.get_partition_metadata(stream_name, 0)
    assert retries.errors == []
