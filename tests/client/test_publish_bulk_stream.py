"""`publish_bulk` streams: bounded requests in flight, acks yielded as they come.

It reads the iterable only as acks come back, so an endless generator works
in bounded memory, and it counts acks per correlation id, so requests that
share one (gufo lets the caller choose it) are each acked.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from client_support import HANG_GUARD, read_all
from helpers import aclosing

from lbwire.client import LiftbridgeClient
from lbwire.wire import PublishRequest

pytestmark = pytest.mark.anyio

#: Far below what a million buffered requests take (hundreds of MiB), far
#: above what a bounded window of them takes.
MEMORY_BOUND = 32 * 1024 * 1024


# Memory is measured with tracemalloc, which PyPy lacks: `slow` keeps this
# test to the CPython run, like the suite's other memory tests.
@pytest.mark.slow
async def test_an_endless_generator_yields_acks_in_bounded_memory(
    client: LiftbridgeClient, stream: str
) -> None:
    import tracemalloc

    def requests() -> Iterator[PublishRequest]:
        for i in range(1_000_000):
            yield client.get_publish_request(b"%d" % i, stream=stream)

    wanted = 20_000
    offsets = []
    tracemalloc.start()
    try:
        with anyio.fail_after(HANG_GUARD * 4):
            async with aclosing(client.publish_bulk(requests())) as acks:
                async for response in acks:
                    offsets.append(response.ack.offset)
                    if len(offsets) == wanted:
                        break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert offsets == list(range(wanted))
    assert peak < MEMORY_BOUND, f"peak {peak / 2**20:.1f} MiB"


async def test_requests_sharing_a_correlation_id_are_each_acked(
    broker: str, stream_name: str
) -> None:
    async with LiftbridgeClient([broker], publish_async_ack_timeout=HANG_GUARD) as client:
        await client.create_stream(stream_name, wait_for_stream=True)
        requests = [
            client.get_publish_request(b"%d" % i, stream=stream_name, correlation_id="batch")
            for i in range(200)
        ]
        with anyio.fail_after(HANG_GUARD / 2):
            responses = [r async for r in client.publish_bulk(requests)]
        assert [r.ack.offset for r in responses] == list(range(200))
        assert {r.correlationId for r in responses} == {"batch"}
        assert len(await read_all(client, stream_name)) == 200
