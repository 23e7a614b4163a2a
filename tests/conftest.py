"""Shared fixtures: real Liftbridge servers, anyio backends, stream names.

``liftbridge_server`` is one server for the whole session; ``fresh_server``
gives a test its own; both are of the generation ``LBWIRE_SERVER`` selects
(v1.9.0 by default, or ``newest``), and ``server_generation`` names it. When a
test that uses a server fails, its report gets a "Liftbridge log" section with
the log path and last lines.

Tests using a fixture of ``helpers.servers.SERVER_FIXTURES`` are marked
``server`` automatically (``-m "not server"`` deselects them). Every test not
marked ``server`` runs with ``LBWIRE_NO_SERVER`` set, so one that starts a
server anyway fails loudly: ``-m "not server"`` starts no server.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
from collections.abc import Generator, Iterator

import pytest
from helpers.servers import SERVER_FIXTURES, generation

from lbwire.testing import NO_SERVER_ENV, LiftbridgeCluster, LiftbridgeServer


@pytest.fixture(scope="session")
def liftbridge_server() -> Iterator[LiftbridgeServer]:
    """One real Liftbridge server shared by the whole session."""
    with LiftbridgeServer() as server:
        yield server


@pytest.fixture
def fresh_server() -> Iterator[LiftbridgeServer]:
    """A real Liftbridge server of the test's own (restart, kill, config tests)."""
    with LiftbridgeServer() as server:
        yield server


@pytest.fixture(scope="session")
def server_generation(liftbridge_server: LiftbridgeServer) -> str:
    """The generation of the servers this run uses: ``"v1.9.0"`` or ``"newest"``."""
    return generation(liftbridge_server)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each anyio test on asyncio and on trio."""
    return str(request.param)


_stream_numbers = itertools.count(1)


@pytest.fixture
def stream_name(request: pytest.FixtureRequest) -> str:
    """A stream name no other test in the session uses (also a valid subject)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40]
    return f"{base or 'stream'}-{next(_stream_numbers)}"


def pytest_configure(config: pytest.Config) -> None:
    # A run ended with SIGTERM (a CI timeout, `kill`) would leave its servers
    # running: the default action ends the process without the atexit hook of
    # lbwire.testing that kills them. As SystemExit, the session unwinds.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # Started in the background by a shell without job control, the run
    # ignores SIGINT, and so would every child it starts: the Ctrl-C tests
    # would wait in vain. A handler here is reset to the default in children.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Generator[None, object, object]:
    if item.get_closest_marker("server") is not None:
        return (yield)
    before = os.environ.get(NO_SERVER_ENV)
    os.environ[NO_SERVER_ENV] = (
        f"{item.nodeid} is not marked `server`: mark it, or add the fixture that "
        f"starts the server to SERVER_FIXTURES in tests/helpers/servers.py"
    )
    try:
        return (yield)
    finally:
        if before is None:
            os.environ.pop(NO_SERVER_ENV, None)
        else:
            os.environ[NO_SERVER_ENV] = before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        sections = []
        for value in getattr(item, "funcargs", {}).values():
            nodes = value.nodes if isinstance(value, LiftbridgeCluster) else [value]
            for node in nodes:
                if isinstance(node, LiftbridgeServer) and node.log_bytes():
                    sections.append(f"{node!r}\nlog: {node.log_path}\n{node.log_tail(30)}")
        if sections:
            report.sections.append(("Liftbridge log", "\n\n".join(sections)))
    return report
