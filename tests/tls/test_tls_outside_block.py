"""Leaving a TLS subscription with `break` outside the client's block (PEP 789).

On TLS a connection needs a reader task on both backends; outside the block
it runs only while the subscription waits, in a task group of that wait.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterator

import pytest
from helpers import wait_until
from tls_support import PKI

from lbwire.client import LiftbridgeClient
from lbwire.testing import LiftbridgeServer, TLSFiles
from lbwire.types import StartPosition

pytestmark = pytest.mark.anyio

BREAKS = 100


def _collected_fds_at_most(most: int) -> Callable[[], bool]:
    # An abandoned generator is closed only once it is collected: at once
    # where objects are reference counted (CPython), at a collection on PyPy;
    # and what its closing releases may wait for the next one.
    def settled() -> bool:
        gc.collect()
        return len(os.listdir("/proc/self/fd")) <= most

    return settled


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[LiftbridgeServer]:
    with LiftbridgeServer(tls=TLSFiles(pki.server_cert_file, pki.server_key_file)) as server:
        yield server


# trio warns about a generator left unexhausted by the user's own `break`
# when it is collected (gufo-style code without aclose): the user's warning.
@pytest.mark.filterwarnings("ignore:Async generator .* was garbage collected:ResourceWarning")
async def test_a_break_out_of_a_tls_subscription_outside_the_block_ends_it_cleanly(
    tls_server: LiftbridgeServer, pki: PKI, stream_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = LiftbridgeClient([tls_server.broker], ssl_context=pki.context())
    async with client:
        await client.create_stream(stream_name, wait_for_stream=True)
        await client.publish(b"only", stream=stream_name)
    caplog.set_level(logging.WARNING)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(BREAKS):
        async for message in client.subscribe(stream_name, start_position=StartPosition.EARLIEST):
            assert message.value == b"only"
            break
    await wait_until(_collected_fds_at_most(fds), "the sockets are closed")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
