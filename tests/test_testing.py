"""The throwaway-server launcher, lbwire.testing, against the real Liftbridge."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import anyio
import pytest

from lbwire import testing
from lbwire.grpc import Channel
from lbwire.testing import (
    NEWEST,
    NEWEST_TARBALL,
    NO_SERVER_ENV,
    LiftbridgeBuildError,
    LiftbridgeCluster,
    LiftbridgeNotFound,
    LiftbridgeServer,
    LiftbridgeStartError,
    find_liftbridge,
    needs_telemetry_key,
)

# -- helpers ---------------------------------------------------------------


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        found = re.fullmatch(r"socket:\[(\d+)\]", target)
        if found:
            inodes.add(found.group(1))
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:  # 0A: LISTEN
                    continue
                hex_ip, hex_port = local.split(":")
                raw = bytes.fromhex(hex_ip)
                # The kernel prints each 32-bit word in host (little-endian) order.
                ip = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                addresses.add((str(ipaddress.ip_address(ip)), int(hex_port, 16)))
    return addresses


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def fetch_metadata_broker_ids(broker: str, timeout: float | None = 10) -> list[str]:
    """FetchMetadata through grpcio (a second gRPC peer; lbwire's channel where
    grpcio is not installed); return the broker ids.

    While a Raft member is down, v1.9.0 waits for its answer until the call's
    deadline (3 s without one) and then answers: a call with a deadline of its
    own then races that deadline, so such calls go without one.
    """
    try:
        import grpc
    except ImportError:  # no grpcio wheels for PyPy: lbwire's own channel then
        response = anyio.run(_fetch_metadata_with_lbwire, broker, timeout)
    else:
        with grpc.insecure_channel(broker) as channel:
            call = channel.unary_unary("/proto.API/FetchMetadata")
            response = call(b"", timeout=timeout)
    return [
        dict(_fields(broker_bytes))[1].decode()
        for number, broker_bytes in _fields(response)
        if number == 1
    ]


async def _fetch_metadata_with_lbwire(broker: str, timeout: float | None) -> bytes:
    host, port = broker.rsplit(":", 1)
    async with Channel.open(host, int(port)) as channel:
        return await channel.unary_unary("/proto.API/FetchMetadata", b"", timeout=timeout)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level length-delimited fields of a protobuf message (others skipped)."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            fields.append((key >> 3, data[pos : pos + size]))
            pos += size
        else:
            pos += {1: 8, 5: 4}[wire_type]
    return fields


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def failing_first_launch(tmp_path: Path, *log_lines: str) -> Path:
    """A `liftbridge` whose first launch prints `log_lines` and exits 2; the
    next ones (and `--version`) run the real binary."""
    real = find_liftbridge()
    marker = tmp_path / "launched-once"
    echoes = "".join(f"  echo {line}\n" for line in log_lines)
    return write_script(
        tmp_path / "liftbridge",
        f'if [ "$1" = --version ]; then exec "{real}" "$@"; fi\n'
        f'if [ ! -e "{marker}" ]; then\n'
        f'  touch "{marker}"\n'
        f"{echoes}"
        "  exit 2\n"
        "fi\n"
        f'exec "{real}" "$@"\n',
    )


@pytest.fixture
def no_liftbridge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LIFTBRIDGE_BIN, an empty cache, and PATH = an empty directory.

    Nothing can start a server here, so the suite's guard against unmarked
    tests starting one (LBWIRE_NO_SERVER) is lifted to show lbwire's own errors.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.delenv("LIFTBRIDGE_BIN", raising=False)
    monkeypatch.delenv("LBWIRE_SERVER", raising=False)
    monkeypatch.delenv("LBWIRE_LIFTBRIDGE_SOURCE", raising=False)
    monkeypatch.delenv(NO_SERVER_ENV, raising=False)
    monkeypatch.setenv("LBWIRE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


# -- the running server ------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_server_listens_on_loopback_only(liftbridge_server: LiftbridgeServer) -> None:
    assert liftbridge_server.pid is not None
    assert listening_addresses(liftbridge_server.pid) == {
        ("127.0.0.1", liftbridge_server.port),
        ("127.0.0.1", liftbridge_server.nats_port),
    }
    assert liftbridge_server.broker == f"127.0.0.1:{liftbridge_server.port}"


def test_server_answers_fetch_metadata(liftbridge_server: LiftbridgeServer) -> None:
    assert len(fetch_metadata_broker_ids(liftbridge_server.broker)) == 1


def test_server_config_enables_cursors_and_turns_telemetry_off_after_v1_9_0(
    liftbridge_server: LiftbridgeServer, server_generation: str
) -> None:
    config = json.loads(liftbridge_server.config_path.read_text())
    assert config["cursors"]["stream"]["partitions"] == 1
    if server_generation == NEWEST:
        assert config["telemetry"] == {"enabled": False}
    else:
        assert "telemetry" not in config  # v1.9.0 rejects unknown keys


@pytest.mark.server
@pytest.mark.parametrize("version", testing.SERVER_VERSIONS)
def test_each_server_generation_starts_with_its_config(version: str) -> None:
    """Both generations start, whichever the run selected: the newest with
    telemetry off in its config file (and its environment), v1.9.0 without
    the key it would reject."""
    with LiftbridgeServer(version=version) as server:
        assert server.generation == version
        config = json.loads(server.config_path.read_text())
        assert server.pid is not None
        if Path("/proc").is_dir():
            with open(f"/proc/{server.pid}/environ", "rb") as environ:
                assert b"LIFTBRIDGE_TELEMETRY_ENABLED=false" in environ.read().split(b"\0")
        log = server.log_text()
        if version == NEWEST:
            assert testing.binary_version(str(server.binary)) == "dev"
            assert config["telemetry"] == {"enabled": False}
        else:
            assert testing.binary_version(str(server.binary)) == "v1.9.0"
            assert "telemetry" not in config
        # The newest logs "Telemetry collector started" when it is on.
        assert "elemetry" not in log
        assert len(fetch_metadata_broker_ids(server.broker)) == 1


def test_restart_keeps_ports_and_data(fresh_server: LiftbridgeServer) -> None:
    # The server id lives in the data dir: the same id after a restart (and a
    # crash) proves the data survived.
    def server_ids() -> list[str]:
        return re.findall(r"Server ID:\s+(\S+)\"", fresh_server.log_text())

    port, data_dir = fresh_server.port, fresh_server.data_dir
    fresh_server.restart()
    fresh_server.kill()
    assert not fresh_server.running
    fresh_server.start()

    ids = server_ids()
    # Three launches, or more: a lone node that does not elect itself in time
    # is launched again (the newest Liftbridge after a kill, sometimes).
    assert len(ids) >= 3
    assert len(set(ids)) == 1
    assert (fresh_server.port, fresh_server.data_dir) == (port, data_dir)
    assert fresh_server.log_text(current_run=True).count("became metadata leader") == 1
    assert accepts_connections(port)


def _reservable_elsewhere(ports: list[int]) -> list[bool]:
    """Whether another process could reserve each port now."""
    code = (
        "import sys; from lbwire.testing._process import _reserve; "
        "print([_reserve(int(p)) for p in sys.argv[1:]])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, ports)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [word.strip(" []") == "True" for word in out.strip().split(",")]


@pytest.mark.server
def test_a_killed_servers_ports_stay_reserved_until_it_is_closed() -> None:
    # Another test process once started its server on the port of a server a
    # test had killed, and the test met a live server where it meant a dead one.
    with LiftbridgeServer() as server:
        ports = [server.port, server.nats_port]
        server.kill()
        assert _reservable_elsewhere(ports) == [False, False]
    assert _reservable_elsewhere(ports) == [True, True]


@pytest.mark.server
def test_close_removes_data_dir() -> None:
    with LiftbridgeServer() as server:
        data_dir = server.data_dir
        assert data_dir.is_dir()
    assert not data_dir.exists()
    assert not server.running


@pytest.mark.server
def test_a_lone_node_whose_leader_promotion_failed_is_launched_again(tmp_path: Path) -> None:
    """A lone node whose promotion (creating __activity, __cursors) fails logs
    it, tries to hand leadership to a peer it lacks, and panics; the newest
    did so once under load. No real server fails on demand, so the first
    launch runs a stand-in script that logs what it logged; the next runs the
    real binary, and the server must come up ready."""
    wrapper = failing_first_launch(
        tmp_path,
        '"level=info msg=\\"Server became metadata leader, performing leader promotion\\""',
        '"level=error msg=\\"Error on metadata leadership acquired: timed out\\""',
        '"panic: error on metadata leadership step down: cannot find peer"',
    )
    with LiftbridgeServer(binary=str(wrapper)) as server:
        log = server.log_text()
        assert log.count("--- lbwire: start #") == 2
        assert "cannot find peer" in log
        assert "cannot find peer" not in server.log_text(current_run=True)
        assert len(fetch_metadata_broker_ids(server.broker)) == 1


@pytest.mark.server
def test_a_node_that_panics_while_recovering_is_launched_again(tmp_path: Path) -> None:
    """v1.9.0 once panicked recovering its partitions when a cluster node was
    restarted under load (a nil pointer in partition.startReplicating). No real
    server does it on demand, so the first launch runs a stand-in script that
    logs such a trace and exits; the next runs the real binary."""
    wrapper = failing_first_launch(
        tmp_path,
        '"panic: runtime error: invalid memory address or nil pointer dereference"',
        '"github.com/liftbridge-io/liftbridge/server.(*Server).finishedRecovery(0x1)"',
    )
    with LiftbridgeServer(binary=str(wrapper)) as server:
        log = server.log_text()
        assert log.count("--- lbwire: start #") == 2
        assert "finishedRecovery" in log
        assert "finishedRecovery" not in server.log_text(current_run=True)
        assert len(fetch_metadata_broker_ids(server.broker)) == 1


@pytest.mark.server
@pytest.mark.anyio
async def test_async_context_manager_runs_ready_check() -> None:
    calls = []

    async def ready_check(server: LiftbridgeServer) -> bool:
        calls.append(server.broker)
        return len(calls) >= 2  # "not yet" once, to show it is polled

    async with LiftbridgeServer(ready_check=ready_check) as server:
        assert server.running
        assert calls == [server.broker] * 2
    assert not server.running


# -- configuration -------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "needs_key"),
    [
        ("v1.9.0", False),
        ("v1.8.1", False),
        ("1.9.0", False),
        ("dev", True),
        ("v26.1.0", True),
        ("26.01.2", True),
        ("v1.9.1", True),
        ("v1.10.0", True),
        ("", True),
    ],
)
def test_telemetry_key_for_every_build_but_v1_releases(version: str, needs_key: bool) -> None:
    assert needs_telemetry_key(version) is needs_key
    config = testing.liftbridge_config(
        version=version,
        port=1,
        nats_port=2,
        nats_config=Path("n.conf"),
        data_dir=Path("d"),
    )
    assert ("telemetry" in config) is needs_key
    if needs_key:
        assert config["telemetry"] == {"enabled": False}


@pytest.mark.parametrize(
    "overrides",
    [
        {"telemetry.enabled": True},
        {"telemetry": None},
        {"telemetry": {"enabled": True, "interval": {"seconds": 60}}},
        {"telemetry": "on"},
    ],
)
def test_overrides_cannot_turn_telemetry_on(overrides: dict[str, object]) -> None:
    config = testing.liftbridge_config(
        version="dev",
        port=1,
        nats_port=2,
        nats_config=Path("n.conf"),
        data_dir=Path("d"),
        overrides=overrides,
    )
    assert config["telemetry"]["enabled"] is False


def test_config_overrides_take_dotted_or_nested_keys_and_none_removes() -> None:
    config = testing.liftbridge_config(
        version="v1.9.0",
        port=1,
        nats_port=2,
        nats_config=Path("n.conf"),
        data_dir=Path("d"),
        overrides={
            "streams.retention.max.age": "1h",
            "cursors": {"stream": {"partitions": 3}},
            "clustering.raft.bootstrap.seed": None,
        },
    )
    assert config["streams"] == {"retention": {"max": {"age": "1h"}}}
    assert config["cursors"]["stream"] == {
        "partitions": 3,
        "auto": {"pause": {"time": 0}},
    }
    assert config["clustering"]["raft"]["bootstrap"] == {}
    assert config["listen"] == "127.0.0.1:1"
    assert config["nats"]["servers"] == ["nats://127.0.0.1:2"]


def test_server_of_other_version_gets_telemetry_off_and_start_error_shows_log(
    tmp_path: Path,
) -> None:
    fake = write_script(
        tmp_path / "liftbridge",
        'if [ "$1" = --version ]; then echo "liftbridge version dev"; exit 0; fi\n'
        'cat "$2"\necho "fake server, env telemetry=$LIFTBRIDGE_TELEMETRY_ENABLED"\n'
        "exit 3\n",
    )
    server = LiftbridgeServer(binary=str(fake), start_timeout=10)
    with pytest.raises(LiftbridgeStartError, match="exited with status 3") as failed:
        server.__enter__()
    message = str(failed.value)
    assert str(server.log_path) in message
    assert "env telemetry=false" in message
    assert re.search(r'"telemetry": \{\s*"enabled": false', message)
    assert server.log_path.exists()  # kept for the reader of the error
    shutil.rmtree(server.workdir)


# -- finding and building the binary ---------------------------------------


def test_no_binary_and_no_go_says_what_to_install(no_liftbridge: Path) -> None:
    with pytest.raises(LiftbridgeNotFound, match="Go is not installed") as failed:
        find_liftbridge()
    assert "LIFTBRIDGE_BIN" in str(failed.value)
    assert "https://go.dev/dl/" in str(failed.value)
    with pytest.raises(LiftbridgeNotFound, match="LIFTBRIDGE_BIN"):
        LiftbridgeServer().start()


def test_liftbridge_bin_must_name_an_executable(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFTBRIDGE_BIN", str(no_liftbridge / "missing"))
    with pytest.raises(LiftbridgeNotFound, match="not an executable file"):
        find_liftbridge()


def test_lookup_order_env_then_path_then_cache(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cached = testing.cache_dir() / f"liftbridge-{testing.LIFTBRIDGE_VERSION}"
    cached.mkdir(parents=True)
    write_script(cached / "liftbridge", "")
    assert find_liftbridge(build=False) == str(cached / "liftbridge")
    on_path = write_script(no_liftbridge / "liftbridge", "")
    assert find_liftbridge(build=False) == str(on_path)
    explicit = write_script(tmp_path / "explicit", "")
    monkeypatch.setenv("LIFTBRIDGE_BIN", str(explicit))
    assert find_liftbridge(build=False) == str(explicit)


FAKE_GO = """\
case "$1" in
install) echo "go: loading deprecation: @v/list: 403 Forbidden" >&2; exit 1;;
mod) echo '{"Path": "github.com/liftbridge-io/liftbridge", "Dir": "'"$MODULE_DIR"'"}';;
build) [ -n "$FAIL_BUILD" ] && { echo "compile error" >&2; exit 2; }
       while [ "$1" != -o ]; do shift; done
       printf '#!/bin/sh\\necho built in %s\\n' "$PWD" > "$2"; /bin/chmod +x "$2";;
esac
"""


def test_build_falls_back_to_go_build_when_go_install_fails(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_script(no_liftbridge / "go", FAKE_GO)
    monkeypatch.setenv("MODULE_DIR", str(tmp_path))
    binary = Path(find_liftbridge())
    assert binary == testing.cache_dir() / "liftbridge-v1.9.0" / "liftbridge"
    assert subprocess.run([binary], capture_output=True, text=True).stdout == (
        f"built in {tmp_path}\n"
    )
    build_log = (binary.parent / "build.log").read_text()
    assert "403 Forbidden" in build_log
    assert re.search(r"go build .*-o ", build_log)
    assert [p.name for p in binary.parent.iterdir() if p.name.startswith(".build")] == []


def test_failed_build_shows_the_build_log(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_script(no_liftbridge / "go", FAKE_GO)
    monkeypatch.setenv("MODULE_DIR", str(tmp_path))
    monkeypatch.setenv("FAIL_BUILD", "1")
    with pytest.raises(LiftbridgeBuildError, match="compile error") as failed:
        find_liftbridge()
    assert "build.log" in str(failed.value)


def test_server_env_selects_the_generation_and_its_cache(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version, folder in [
        ("v1.9.0", "liftbridge-v1.9.0"),
        (NEWEST, "liftbridge-main-50ac358b41eb"),
    ]:
        cached = testing.cache_dir() / folder
        cached.mkdir(parents=True)
        write_script(cached / "liftbridge", "")
        monkeypatch.setenv("LBWIRE_SERVER", version)
        assert find_liftbridge(build=False) == str(cached / "liftbridge")
        assert find_liftbridge(build=False, version=version) == str(cached / "liftbridge")
    monkeypatch.setenv("LBWIRE_SERVER", "v2")
    with pytest.raises(ValueError, match=r"LBWIRE_SERVER='v2'.*v1\.9\.0, newest"):
        find_liftbridge(build=False)


def test_liftbridge_bin_serves_an_explicit_version_only_if_it_is_that_generation(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = write_script(tmp_path / "old", "echo liftbridge version v1.9.0\n")
    monkeypatch.setenv("LIFTBRIDGE_BIN", str(old))
    cached_newest = testing.cached_binary(NEWEST)
    cached_newest.parent.mkdir(parents=True)
    write_script(cached_newest, "echo liftbridge version dev\n")
    monkeypatch.setenv("LBWIRE_SERVER", NEWEST)
    assert find_liftbridge(build=False) == str(old)  # chosen by the environment: as it is
    assert find_liftbridge(build=False, version="v1.9.0") == str(old)
    assert find_liftbridge(build=False, version=NEWEST) == str(cached_newest)


def test_newest_without_its_tarball_names_the_path_expected(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_script(no_liftbridge / "go", "exit 1\n")
    # A folder without the tarball (the checkout's own ../shared may hold one).
    monkeypatch.setenv("LBWIRE_LIFTBRIDGE_SOURCE", str(tmp_path))
    with pytest.raises(LiftbridgeNotFound, match=NEWEST_TARBALL) as failed:
        find_liftbridge(version=NEWEST)
    assert str(tmp_path / NEWEST_TARBALL) in str(failed.value)
    assert "LBWIRE_LIFTBRIDGE_SOURCE" in str(failed.value)
    # The default place: ../shared/liftbridge/ beside the checkout.
    monkeypatch.delenv("LBWIRE_LIFTBRIDGE_SOURCE")
    checkout = Path(testing.__file__).resolve().parents[2]
    assert testing.newest_source() == checkout.parent / "shared" / "liftbridge" / NEWEST_TARBALL


def test_newest_is_built_from_its_source_tarball(
    no_liftbridge: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    (source / "liftbridge-50ac358b41eb").mkdir(parents=True)
    (source / "liftbridge-50ac358b41eb" / "go.mod").write_text("module x\n")
    tarball = tmp_path / NEWEST_TARBALL
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(source / "liftbridge-50ac358b41eb", arcname="liftbridge-50ac358b41eb")
    write_script(no_liftbridge / "go", FAKE_GO)
    monkeypatch.setenv("LBWIRE_LIFTBRIDGE_SOURCE", str(tarball))
    binary = Path(find_liftbridge(version=NEWEST))
    assert binary == testing.cache_dir() / "liftbridge-main-50ac358b41eb" / "liftbridge"
    built_in = subprocess.run([binary], capture_output=True, text=True).stdout
    assert built_in.endswith("/src/liftbridge-50ac358b41eb\n")
    assert [p.name for p in binary.parent.iterdir() if p.name.startswith(".build")] == []
    assert find_liftbridge(version=NEWEST) == str(binary)  # cached


def test_tests_not_marked_server_cannot_start_one() -> None:
    # The proof that `-m "not server"` starts no server: every test outside
    # the marker runs with LBWIRE_NO_SERVER set (tests/conftest.py).
    assert NO_SERVER_ENV in os.environ
    with pytest.raises(LiftbridgeStartError, match="is not marked `server`"):
        LiftbridgeServer().start()
    with pytest.raises(LiftbridgeStartError, match="is not marked `server`"):
        LiftbridgeCluster(size=3).start()


@pytest.mark.server
def test_tests_marked_server_may_start_one() -> None:
    assert NO_SERVER_ENV not in os.environ


def test_install_command_takes_the_server_generation(no_liftbridge: Path) -> None:
    cached = testing.cached_binary(NEWEST)
    cached.parent.mkdir(parents=True)
    write_script(cached, "")
    done = subprocess.run(
        [sys.executable, "-m", "lbwire.testing", "--install", "--server", NEWEST],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"{cached}\n"


def test_install_command_prints_the_binary_path(tmp_path: Path) -> None:
    fake = write_script(tmp_path / "liftbridge", "")
    done = subprocess.run(
        [sys.executable, "-m", "lbwire.testing", "--install"],
        env={**os.environ, "LIFTBRIDGE_BIN": str(fake)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"{fake}\n"


# -- a cluster -----------------------------------------------------------


@pytest.mark.server
def test_cluster_survives_losing_its_metadata_leader() -> None:
    with LiftbridgeCluster(size=3) as cluster:
        assert len(set(cluster.brokers)) == 3
        if Path("/proc/net/tcp").exists():
            for node in cluster.nodes:
                assert node.pid is not None
                addresses = listening_addresses(node.pid)
                assert {ip for ip, _ in addresses} == {"127.0.0.1"}
                assert len(addresses) == 3  # gRPC, NATS clients, NATS routes
        old_leader = cluster.metadata_leader()
        assert old_leader is not None
        assert len(fetch_metadata_broker_ids(old_leader.broker)) == 3

        old_leader.kill()
        new_leader = cluster.wait_ready()

        assert new_leader is not old_leader
        assert "Server became metadata leader" in new_leader.log_text()
        survivors = [node for node in cluster.nodes if node is not old_leader]
        for node in survivors:
            assert accepts_connections(node.port)
        assert sorted(fetch_metadata_broker_ids(new_leader.broker, None)) == sorted(
            node.server_id for node in survivors
        )

        old_leader.start()  # returns once the leader replicates to it again
        assert cluster.metadata_leader() is new_leader
        assert len(fetch_metadata_broker_ids(old_leader.broker)) == 3
