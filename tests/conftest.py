"""Shared fixtures: real Liftbridge servers, anyio backends, stream names.

``liftbridge_server`` is one server for the whole session; ``fresh_server``
gives a test its own. When a test that uses either fails, its report gets a
"Liftbridge log" section with the log path and last lines. Tests using them are
marked ``server`` automatically (``-m "not server"`` deselects them).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Generator, Iterator

import pytest

from lbwire.testing import LiftbridgeCluster, LiftbridgeServer

_SERVER_FIXTURES = {"liftbridge_server", "fresh_server"}


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


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
                if isinstance(node, LiftbridgeServer) and node._workdir is not None:
                    sections.append(f"{node!r}\nlog: {node.log_path}\n{node.log_tail(30)}")
        if sections:
            report.sections.append(("Liftbridge log", "\n\n".join(sections)))
    return report
