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

import contextlib
import gc
import itertools
import os
import re
import resource
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import anyio
import pytest
from helpers.servers import SERVER_FIXTURES, generation

from lbwire.client import LiftbridgeClient
from lbwire.error import ErrorNotFound
from lbwire.testing import NO_SERVER_ENV, LiftbridgeCluster, LiftbridgeServer
from lbwire.testing._process import live_processes

#: The session's shared server, once a test asked for it.
_shared_server: LiftbridgeServer | None = None


@pytest.fixture(scope="session")
def liftbridge_server() -> Iterator[LiftbridgeServer]:
    """One real Liftbridge server shared by the whole session."""
    global _shared_server
    with LiftbridgeServer() as server:
        _shared_server = server
        try:
            yield server
        finally:
            _shared_server = None


@pytest.fixture(scope="module", autouse=True)
def _delete_the_modules_streams() -> Iterator[None]:
    """After each module, delete the streams it left on the shared server.

    Every partition costs a Liftbridge server CPU while idle (it writes its
    high watermark to disk every 5 s): a session's server that kept every
    test's streams spent a fifth of a core by the end, per test process. No
    test uses another module's streams. This fixture is set up before, and
    so torn down after, the module's own fixtures.
    """
    yield
    server = _shared_server
    if server is not None and server.running:
        anyio.run(_delete_streams, server.broker)


async def _delete_streams(broker: str) -> None:
    async with LiftbridgeClient([broker]) as client:
        metadata = await client.get_metadata()
        names = [s.name for s in metadata.metadata if not s.name.startswith("__")]
        limit = anyio.Semaphore(16)

        async def delete(name: str) -> None:
            async with limit:
                with contextlib.suppress(ErrorNotFound):
                    await client.delete_stream(name)

        async with anyio.create_task_group() as tasks:
            for name in names:
                tasks.start_soon(delete, name)


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


#: Set (to anything) to collect garbage after every test: an object a test left
#: to the collector (an unclosed pipe, socket or transport: ResourceWarning)
#: then fails that test's teardown, not whichever test ran at the next
#: collection (PyPy collects late). Off by default: a full collection per
#: test costs time.
COLLECT_EACH_ENV = "LBWIRE_TEST_COLLECT_EACH"


@pytest.fixture(autouse=bool(os.environ.get(COLLECT_EACH_ENV)))
def _collect_after_each() -> Iterator[None]:
    yield
    gc.collect()


_stream_numbers = itertools.count(1)


@pytest.fixture
def stream_name(request: pytest.FixtureRequest) -> str:
    """A stream name no other test in the session uses (also a valid subject)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")[:40]
    return f"{base or 'stream'}-{next(_stream_numbers)}"


def pytest_configure(config: pytest.Config) -> None:
    # A run ended with SIGTERM (a CI timeout, `kill`) would leave its servers
    # running: the default action ends the process without the atexit hook of
    # lbwire.testing that kills them. It ends the session as Ctrl-C does.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _end_session)
    # Started in the background by a shell without job control, the run
    # ignores SIGINT, and so would every child it starts: the Ctrl-C tests
    # would wait in vain. A handler here is reset to the default in children.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # pytest-xdist's controller runs no test: a signal sent to it alone must
    # reach the workers, whose servers it would otherwise leave behind (it
    # kills a worker that has not ended within its exit timeout).
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        global _workers_to_signal
        _workers_to_signal = True
        signal.signal(signal.SIGINT, _end_session)


_ending = False
_workers_to_signal = False


def _end_session(signum: int, frame: object) -> None:
    global _ending
    if _ending:  # the session is unwinding: let it stop its servers
        return
    _ending = True
    for pid in _children() if _workers_to_signal else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    # The run is abandoned: its servers need no graceful stop (which may take
    # seconds each), only to be gone before the session ends.
    for process in list(live_processes):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    raise KeyboardInterrupt(f"ended by {signal.Signals(signum).name}")


def _children() -> list[int]:
    """This process's child processes (the xdist workers of a controller); Linux only."""
    pids = []
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.extend(int(pid) for pid in children.read_text().split())
    return pids


#: Modules whose tests run longest (building wheels and venvs, the docs site,
#: benchmark runs) go first, then those holding a `slow` test: xdist's workers
#: (scripts/test.sh hands them whole files) then do not wait on one of them at
#: the end of a pass.
LONG_MODULES = ("test_benchmarks.py", "test_packaging.py", "test_docs.py")

#: The hang guard (pytest-timeout) of those modules' tests and `slow` ones,
#: which run for minutes; every other test has pyproject's `timeout`.
LONG_TIMEOUT = 1800


#: Environment variable naming where a pass runs tests on trio as well as on
#: asyncio: unset, everywhere; else a comma-separated list of test paths (empty:
#: nowhere). scripts/test.sh sets it for the passes that prove something other
#: than the backend (see the README's Testing section).
TRIO_IN_ENV = "LBWIRE_TEST_TRIO_IN"


def _trio_deselected(items: list[pytest.Item], root: Path) -> list[pytest.Item]:
    """The trio variants of tests outside ``$LBWIRE_TEST_TRIO_IN``'s paths."""
    where = os.environ.get(TRIO_IN_ENV)
    if where is None:
        return []
    paths = [(root / part.strip()).resolve() for part in where.split(",") if part.strip()]

    def trio_elsewhere(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("anyio_backend") != "trio":
            return False
        return not any(item.path == path or path in item.path.parents for path in paths)

    return [item for item in items if trio_elsewhere(item)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = _trio_deselected(items, config.rootpath)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        dropped = set(deselected)
        items[:] = [item for item in items if item not in dropped]
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)
    with_slow = {item.path for item in items if item.get_closest_marker("slow")}
    for item in items:
        if item.path.name in LONG_MODULES or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT))
    # A stable sort of whole modules, so module-scoped servers start once;
    # but tests marked `minutes` come first: the slow pass's loadgroup
    # scheduling then hands each to a worker of its own at the start.
    items.sort(
        key=lambda item: (
            not item.get_closest_marker("minutes"),
            item.path.name not in LONG_MODULES,
            item.path not in with_slow,
        )
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Generator[None, object, object]:
    # LBWIRE_TEST_CPU_DIR=DIR: each process appends a line per test to a file
    # there, the test's id and the CPU seconds of this process and of the
    # children it reaped meanwhile (servers stopped at a module's end count
    # for its last test), to find what loads a run (scripts/test_times.py).
    cpu_dir = os.environ.get("LBWIRE_TEST_CPU_DIR")
    if not cpu_dir:
        return (yield from _run_test(item))
    before = _cpu_seconds()
    try:
        return (yield from _run_test(item))
    finally:
        with open(Path(cpu_dir) / f"cpu-{os.getpid()}.tsv", "a", encoding="utf-8") as log:
            log.write(f"{item.nodeid}\t{_cpu_seconds() - before:.3f}\n")


def _run_test(item: pytest.Item) -> Generator[None, object, object]:
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
