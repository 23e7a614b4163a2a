"""One throwaway Liftbridge node on 127.0.0.1 (with NATS embedded)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Union

import anyio
import anyio.to_thread

from lbwire.testing._build import (
    binary_version,
    find_liftbridge,
    server_generation,
    tail,
)
from lbwire.testing._config import LOOPBACK, TLSFiles, liftbridge_config, nats_config
from lbwire.testing._probe import has_stream
from lbwire.testing._process import (
    LiftbridgeStartError,
    Managed,
    accepts_connections,
    check_port_free,
    free_ports,
    live_processes,
    release_ports,
)

logger = logging.getLogger("lbwire.testing")

#: Seconds a server gets to become ready before start() gives up.
DEFAULT_START_TIMEOUT = 60.0
#: Seconds a graceful stop (SIGINT) gets before the process is killed.
DEFAULT_STOP_TIMEOUT = 10.0
#: Environment variable that forbids starting a server found by lbwire; its
#: value says why. Test-facing: lbwire's own suite sets it for every test not
#: marked ``server``, so such a test that starts one fails loudly.
NO_SERVER_ENV = "LBWIRE_NO_SERVER"

_POLL_INTERVAL = 0.05
#: How long a single node may take to elect itself before it is launched again.
_ELECTION_GRACE = 20.0
_LOG_TAIL_LINES = 40
BECAME_LEADER = "Server became metadata leader"
#: Logged when the actions after an election (creating ``__activity`` and
#: ``__cursors``) failed. A lone node then tries to hand leadership over,
#: cannot, and panics: the launch is lost, and a new one on the same data works.
PROMOTION_FAILED = "Error on metadata leadership acquired"
_PROMOTION_RELAUNCHES = 2
#: In the trace of a panic while recovering partitions on start: v1.9.0 once
#: dereferenced a nil pointer there (``partition.startReplicating``) when a
#: cluster node was restarted under load. The launch is lost; a new one on the
#: same data recovers.
RECOVERY_PANIC = "(*Server).finishedRecovery"
_RECOVERY_RELAUNCHES = 1

#: A readiness check run after the built-in conditions hold: it gets the server
#: and returns true when ready (false or an exception mean "not yet"). It may
#: return an awaitable; that is run with ``anyio.run`` in a thread of its own
#: (the caller's thread may run an event loop already).
ReadyCheck = Callable[["LiftbridgeServer"], Union[bool, Awaitable[bool]]]


def server_binary(version: Optional[str]) -> str:
    """Return the binary a server started without ``binary=`` runs.

    Raises:
        LiftbridgeStartError: ``$LBWIRE_NO_SERVER`` forbids starting one.
        LiftbridgeNotFound: see :func:`find_liftbridge`.

    """
    reason = os.environ.get(NO_SERVER_ENV)
    if reason:
        raise LiftbridgeStartError(
            f"starting a Liftbridge server is not allowed here (${NO_SERVER_ENV}): {reason}"
        )
    return find_liftbridge(version=version)


class Membership(Protocol):
    """How a node belongs to a cluster (see :class:`LiftbridgeCluster`)."""

    @property
    def server_id(self) -> str:
        """The node's Liftbridge server id."""

    @property
    def nats_cluster_port(self) -> int:
        """The port its embedded NATS server listens on for routes."""

    @property
    def nats_routes(self) -> Sequence[int]:
        """The route ports of the other members' NATS servers."""

    @property
    def peers(self) -> Sequence[str]:
        """Every member's server id (the Raft bootstrap configuration)."""

    def node_launched(self, node: LiftbridgeServer) -> None:
        """Called each time the node's process was started."""

    def not_joined_reason(self, node: LiftbridgeServer) -> Optional[str]:
        """Why the node is not (yet) a replicating member, or None if it is."""


class LiftbridgeServer(Managed):
    """One real Liftbridge node on 127.0.0.1, for the length of a ``with`` block.

    The server gets free ports for gRPC and embedded NATS (``port`` pins the
    gRPC port instead, e.g. 9292 for programs that hard-code it; the server
    then refuses to start if another process holds that port), a temporary data
    directory, Raft bootstrapped as a single seed, and cursor management
    enabled (``cursors_partitions`` partitions). ``config_overrides`` is merged
    last, with dotted (``"streams.retention.max.age": "1h"``) or nested keys; a
    value of None removes a key. ``tls`` turns on TLS for the gRPC listener.

    ``version`` picks the server generation, ``"v1.9.0"`` or ``"newest"``
    (default: ``$LBWIRE_SERVER``, else v1.9.0; see :func:`find_liftbridge`);
    ``binary`` names a binary instead. A build newer than v1.9.0 always runs
    with ``telemetry.enabled: false`` in its config.

    Use it as a context manager (``with`` or ``async with``; the async form
    waits in a worker thread, so it works on asyncio and trio) or call
    :meth:`start` and :meth:`close`. :meth:`stop`, :meth:`kill` and
    :meth:`restart` keep ports and data, for restart and failover tests.

    Readiness: the process runs, the log says it became metadata leader (in a
    cluster: a leader replicates to it), the gRPC port accepts connections, and
    ``ready_check`` (if given) returns true.
    """

    def __init__(
        self,
        *,
        port: Optional[int] = None,
        binary: Optional[str] = None,
        version: Optional[str] = None,
        cursors_partitions: int = 1,
        config_overrides: Optional[Mapping[str, Any]] = None,
        tls: Optional[TLSFiles] = None,
        log_level: str = "info",
        start_timeout: float = DEFAULT_START_TIMEOUT,
        ready_check: Optional[ReadyCheck] = None,
        keep_files: bool = False,
        _membership: Optional[Membership] = None,
        _ports: Optional[tuple[int, int]] = None,
    ) -> None:
        self._binary = binary
        self._version = version
        self._cursors_partitions = cursors_partitions
        self._overrides = dict(config_overrides or {})
        self._tls = tls
        self._log_level = log_level
        self._start_timeout = start_timeout
        self._ready_check = ready_check
        self._keep_files = keep_files
        self._membership = _membership
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1-65535, not {port}")
        if port is not None and _ports is not None:
            raise ValueError("give either port or _ports, not both")
        #: The gRPC port asked for with ``port`` (None: a free one is picked).
        self._requested_port = port
        self._ports_fixed = _ports is not None or port is not None
        self.port, self.nats_port = _ports if _ports is not None else (port or 0, 0)
        #: Always 127.0.0.1.
        self.host = LOOPBACK
        self._workdir: Optional[Path] = None
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._log_start = 0
        self._starts = 0
        self._ever_ready = False
        self._lock = threading.Lock()

    # -- public state -----------------------------------------------------

    @property
    def broker(self) -> str:
        """``"127.0.0.1:<port>"``, the address clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def binary(self) -> Optional[str]:
        """The server binary: as given, or as found on the first start (else None)."""
        return self._binary

    @property
    def generation(self) -> str:
        """The server generation the binary is, ``"v1.9.0"`` or ``"newest"``.

        Decided from the version the binary reports, not from the one asked for.

        Raises:
            RuntimeError: no binary yet (given none, and never started).

        """
        if self._binary is None:
            raise RuntimeError("the Liftbridge server has not been started")
        return server_generation(binary_version(self._binary))

    @property
    def workdir(self) -> Path:
        """The temporary directory holding config files, log and data."""
        if self._workdir is None:
            raise RuntimeError("the Liftbridge server has not been started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr go to (kept across restarts)."""
        return self.workdir / "liftbridge.log"

    @property
    def data_dir(self) -> Path:
        """The server's ``data.dir``."""
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        """The Liftbridge configuration file."""
        return self.workdir / "liftbridge.yaml"

    @property
    def server_id(self) -> Optional[str]:
        """The Liftbridge server id set in the config (cluster nodes only)."""
        return self._membership.server_id if self._membership else None

    @property
    def pid(self) -> Optional[int]:
        """The process id while the server process exists, else None."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def run_log_offset(self) -> int:
        """The log offset where the output of the current (last) run begins."""
        return self._log_start

    def log_text(self, *, current_run: bool = False) -> str:
        """Return the log; with ``current_run``, only what the last start wrote."""
        return self.log_bytes(self._log_start if current_run else 0).decode(errors="replace")

    def log_bytes(self, offset: int = 0) -> bytes:
        """Return the raw log from byte ``offset`` on (empty before the first start)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()
        except (OSError, RuntimeError):
            return b""

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the log."""
        return tail(self.log_path, lines)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it is ready (also after stop/kill).

        Raises:
            LiftbridgeNotFound: no binary (see :func:`find_liftbridge`).
            LiftbridgeStartError: the server exited or was not ready in time.

        """
        deadline = time.monotonic() + self._start_timeout
        relaunched = False
        promotion_relaunches = recovery_relaunches = 0
        while True:
            self.launch()
            try:
                if self._membership is None and not relaunched:
                    # A lone v1.9.0 node restarted on its data after a kill
                    # sometimes never elects itself; a second launch on the
                    # same data does.
                    attempt_deadline = min(deadline, time.monotonic() + _ELECTION_GRACE)
                    self._wait_ready(attempt_deadline)
                else:
                    self._wait_ready(deadline)
            except LiftbridgeStartError:
                if (
                    self._membership is None
                    and promotion_relaunches < _PROMOTION_RELAUNCHES
                    and PROMOTION_FAILED in self.log_text(current_run=True)
                    and time.monotonic() < deadline
                ):
                    logger.warning(
                        "Liftbridge %s: leader promotion failed, launching it again", self.broker
                    )
                    promotion_relaunches += 1
                    self.kill()
                    continue
                if (
                    recovery_relaunches < _RECOVERY_RELAUNCHES
                    and not self.running
                    and RECOVERY_PANIC in self.log_text(current_run=True)
                    and time.monotonic() < deadline
                ):
                    logger.warning(
                        "Liftbridge %s: panicked while recovering its data, launching it again",
                        self.broker,
                    )
                    recovery_relaunches += 1
                    continue
                if (
                    not relaunched
                    and self._membership is None
                    and self.running
                    and time.monotonic() < deadline
                ):
                    logger.warning("Liftbridge %s: not ready, launching it again", self.broker)
                    relaunched = True
                    self.kill()
                    continue
                # Another process may have taken a port between our probe and
                # the server's bind: pick new ports, unless they are pinned
                # (restarts, cluster members).
                if (
                    self._ports_fixed
                    or self._ever_ready
                    or self.running
                    or ("address already in use" not in self.log_text(current_run=True))
                ):
                    raise
                logger.warning("Liftbridge %s: port taken, retrying", self.broker)
                release_ports(self.port, self.nats_port)
                self.port = self.nats_port = 0
                continue
            self._ever_ready = True
            return

    def launch(self) -> None:
        """Write the config files and start the process without waiting.

        :meth:`start` does this and waits; a cluster launches every node
        first and waits for them together (:meth:`wait_ready`).

        Raises:
            RuntimeError: the process is already running.
            LiftbridgeNotFound: no binary (see :func:`find_liftbridge`).
            LiftbridgeStartError: ``port`` was pinned and is taken.

        """
        with self._lock:
            if self.running:
                raise RuntimeError(f"Liftbridge {self.broker} is already running")
            if self._requested_port is not None and self._starts == 0:
                check_port_free(self._requested_port)
            if self._binary is None:
                self._binary = server_binary(self._version)
            if self._workdir is None:
                # $LBWIRE_TESTING_DIR (e.g. a tmpfs): where servers keep their
                # data, config and log; the system's temporary directory if unset.
                base = os.environ.get("LBWIRE_TESTING_DIR") or None
                self._workdir = Path(tempfile.mkdtemp(prefix="lbwire-liftbridge-", dir=base))
                self.data_dir.mkdir()
            if not self.port:
                self.port, self.nats_port = free_ports(2)
            elif not self.nats_port:
                self.nats_port, spare = free_ports(2)
                release_ports(spare)
            self._write_config()
            if self._membership is not None:
                self._membership.node_launched(self)
            env = dict(os.environ)
            # Belt and braces: post-v1.9.0 builds read the config key, not this.
            env["LIFTBRIDGE_TELEMETRY_ENABLED"] = "false"
            with open(self.log_path, "ab") as log:
                self._starts += 1
                log.write(f"--- lbwire: start #{self._starts} ---\n".encode())
                log.flush()
                self._log_start = log.tell()
                self._process = subprocess.Popen(
                    [self._binary, "--config", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,  # a terminal's Ctrl-C is ours to pass on
                )
            live_processes.add(self._process)

    def _write_config(self) -> None:
        assert self._binary is not None
        member = self._membership
        nats_path = self.workdir / "nats.conf"
        nats_path.write_text(
            nats_config(
                self.nats_port,
                member.nats_cluster_port if member else None,
                member.nats_routes if member else (),
            )
        )
        config = liftbridge_config(
            version=binary_version(self._binary),
            port=self.port,
            nats_port=self.nats_port,
            nats_config=nats_path,
            data_dir=self.data_dir,
            log_level=self._log_level,
            cursors_partitions=self._cursors_partitions,
            tls=self._tls,
            server_id=member.server_id if member else None,
            bootstrap_peers=member.peers if member else None,
            overrides=self._overrides,
        )
        # JSON is YAML; no YAML writer needed.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Block until the launched server is ready (see the class docstring).

        Raises:
            LiftbridgeStartError: the server exited, or was not ready within
                ``timeout`` seconds (default: the start timeout).

        """
        self._wait_ready(time.monotonic() + (self._start_timeout if timeout is None else timeout))

    def _wait_ready(self, deadline: float) -> None:
        """Poll the readiness conditions until ``deadline`` (monotonic clock)."""
        while True:
            reason = self._not_ready_reason()
            if reason is None:
                return
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process else None
                raise self._start_error(f"the server exited with status {code}")
            if time.monotonic() >= deadline:
                raise self._start_error(f"not ready in time: {reason}")
            time.sleep(_POLL_INTERVAL)

    def _not_ready_reason(self) -> Optional[str]:
        """Return why the server is not ready yet, or None when it is."""
        if not self.running:
            return "the process is not running"
        if self._membership is None:
            log = self.log_text(current_run=True)
            if BECAME_LEADER not in log:
                return "no 'became metadata leader' line in the log"
            if PROMOTION_FAILED in log:
                # Not worth waiting for: the node panics next (see start()).
                raise self._start_error("its leader promotion failed")
        else:
            reason = self._membership.not_joined_reason(self)
            if reason is not None:
                return reason
        if not accepts_connections(self.port):
            return f"nothing accepts connections on {self.broker}"
        if self._membership is None and self._cursors_partitions and self._tls is None:
            # The election is logged before the promotion, which can still
            # fail (see PROMOTION_FAILED); creating __cursors is its last step.
            try:
                promoted = has_stream(self.host, self.port, CURSORS_STREAM, _PROBE_TIMEOUT)
            except Exception as exc:
                return f"asking for the {CURSORS_STREAM} stream raised {exc!r}"
            if not promoted:
                return f"the leader promotion has not created {CURSORS_STREAM} yet"
        if self._ready_check is not None:
            try:
                result = self._ready_check(self)
                if inspect.isawaitable(result):
                    result = _run_apart(_await, result)
            except Exception as exc:
                return f"ready_check raised {exc!r}"
            if not result:
                return "ready_check returned false"
        return None

    def _start_error(self, what: str) -> LiftbridgeStartError:
        return LiftbridgeStartError(
            f"Liftbridge {self.broker}: {what}; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server gracefully, killing it after ``grace`` seconds.

        Liftbridge v1.9.0 shuts down cleanly on SIGINT only (SIGTERM ends it
        like SIGKILL), so SIGINT is sent. Ports and data directory are kept.
        """
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning(
                "Liftbridge %s ignored SIGINT for %.0f s; killing it",
                self.broker,
                grace,
            )
            self.kill()

    def kill(self) -> None:
        """Kill the server process at once (SIGKILL), as a crash would."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop the server and start it again on the same ports and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its data (and, unless kept, log and config)."""
        try:
            self.stop()
        finally:
            # Ours to give back; a cluster's or a caller's (pinned) are not
            # reserved here, and releasing them does nothing.
            release_ports(self.port, self.nats_port)
            if self._workdir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                if not self._keep_files:
                    shutil.rmtree(self._workdir, ignore_errors=True)

    def keep_logs(self) -> None:
        """Keep log and config files on :meth:`close` (as ``keep_files=True``)."""
        self._keep_files = True

    # -- async twins (blocking waits run in a worker thread) --------------

    async def astart(self) -> None:
        """Async :meth:`start`."""
        await anyio.to_thread.run_sync(self.start)

    async def astop(self, grace: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Async :meth:`stop`."""
        await anyio.to_thread.run_sync(self.stop, grace)

    async def akill(self) -> None:
        """Async :meth:`kill`."""
        await anyio.to_thread.run_sync(self.kill)

    async def arestart(self) -> None:
        """Async :meth:`restart`."""
        await anyio.to_thread.run_sync(self.restart)

    async def aclose(self) -> None:
        """Async :meth:`close`; runs to the end even when cancelled."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.close)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiftbridgeServer {self.broker} {state} log={self._workdir}>"


async def _await(awaitable: Awaitable[bool]) -> bool:
    return await awaitable


CURSORS_STREAM = "__cursors"


def _run_apart(function: Callable[..., Awaitable[bool]], *args: Any) -> bool:
    """``anyio.run(function, *args)`` in a thread of its own.

    start() and restart() are also called from async code, whose thread
    already runs an event loop (where ``anyio.run`` refuses to start one).
    """
    outcome: list[Union[bool, BaseException]] = []

    def run() -> None:
        try:
            outcome.append(anyio.run(function, *args))
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=run, name="lbwire-testing-probe", daemon=True)
    thread.start()
    thread.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


_PROBE_TIMEOUT = 5.0
