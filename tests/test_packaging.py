"""lbwire as users get it: a pure wheel that needs only h2 and anyio, never grpcio.

The wheel is built from a copy of the working tree (so the build leaves no
``build/`` or ``*.egg-info`` behind) with ``pip wheel``; a fresh virtual
environment that installs only it and its runtime dependencies runs the
cursor example against a real server, as the demo does.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import queue
import re
import runpy
import shutil
import subprocess
import sys
import threading
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import lbwire
from lbwire.cli import main as cli_main
from lbwire.client import LiftbridgeClient
from lbwire.grpc import ChannelConfig
from lbwire.testing import LiftbridgeServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cursor_subscriber.py"
#: What a build copies of the tree: everything but VCS data, environments,
#: caches and earlier build output (so stray packages would still show up).
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".hypothesis"
)
#: Bound on pip and on a subscriber reaching an offset: guards, not expectations.
PIP_TIMEOUT = 600
READ_TIMEOUT = 60.0


def run(argv: list[str], **kwargs: Any) -> str:
    """What `argv` printed (with ``stderr=subprocess.STDOUT``, both streams); it must succeed."""
    kwargs.setdefault("stderr", subprocess.PIPE)
    done = subprocess.run(
        argv, stdout=subprocess.PIPE, text=True, timeout=PIP_TIMEOUT, check=False, **kwargs
    )
    errors = (done.stderr or "")[-3000:]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{errors}"
    return done.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree to build from, so that builds write nothing into the tree."""
    copy = tmp_path_factory.mktemp("source") / "lbwire"
    shutil.copytree(ROOT, copy, ignore=_NOT_COPIED)
    return copy


@pytest.fixture(scope="module")
def build(source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel `pip wheel` builds from the tree (build dependencies from PyPI), and its output."""
    out = tmp_path_factory.mktemp("wheel")
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)]
    # -v: pip shows the build backend's own output (its warnings) only then.
    log = run([*argv, "-v", "--disable-pip-version-check"], stderr=subprocess.STDOUT)
    (built,) = out.glob("*.whl")
    return built, log


@pytest.fixture(scope="module")
def wheel(build: tuple[Path, str]) -> Path:
    return build[0]


def wheel_metadata(wheel: Path) -> email.message.Message:
    """The METADATA of `wheel`, parsed."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(metadata_file).decode())


# -- the wheel --------------------------------------------------------------------------------


def test_wheel_is_pure_python_for_any_platform(wheel: Path) -> None:
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        (wheel_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/WHEEL")]
        tags = email.parser.Parser().parsestr(archive.read(wheel_file).decode())
    assert tags["Root-Is-Purelib"] == "true"
    assert tags.get_all("Tag") == ["py3-none-any"]


def test_wheel_holds_exactly_the_lbwire_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    packaged = {n for n in names if ".dist-info/" not in n}
    in_tree = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "lbwire").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".typed")
    }
    # No tests, benchmarks or examples, no compiled code: lbwire/ and nothing else.
    assert packaged == in_tree
    assert "lbwire/py.typed" in packaged


def test_wheel_requires_only_h2_and_anyio_at_run_time(wheel: Path) -> None:
    metadata = wheel_metadata(wheel)
    unconditional = [r for r in metadata.get_all("Requires-Dist") or [] if "extra ==" not in r]
    names = {re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in unconditional}  # type: ignore[union-attr]
    assert names == {"h2", "anyio"}


def test_building_the_wheel_prints_no_warning(build: tuple[Path, str]) -> None:
    # setuptools' deprecation warnings (the license table, license classifiers)
    # are classes named ...Warning, as the backend's other warnings are.
    assert re.findall(r"\w+Warning\b.*", build[1]) == []


def test_an_editable_install_prints_no_warning(source: Path, tmp_path: Path) -> None:
    # An environment without pip: this interpreter's pip installs into it.
    directory = tmp_path / "env"
    venv.create(directory, with_pip=False, symlinks=os.name != "nt")
    python = directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    log = run([*pip, "install", "-v", "--no-deps", "-e", str(source)], stderr=subprocess.STDOUT)
    assert re.findall(r"\w+Warning\b.*", log) == []
    where = run(
        [str(python), "-c", "import lbwire; print(lbwire.__file__)"], cwd=tmp_path, env=clean_env()
    )
    assert Path(where.strip()) == source / "lbwire" / "__init__.py"


def test_wheel_declares_the_mit_license_as_an_spdx_expression(wheel: Path) -> None:
    metadata = wheel_metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    # The superseded ways of saying it are gone (PEP 639).
    assert metadata["License"] is None
    assert not [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    assert metadata.get_all("License-File") == ["LICENSE"]
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        shipped = archive.read(name).decode()
    assert shipped == (ROOT / "LICENSE").read_text()
    assert shipped.startswith("MIT License\n")
    assert "Copyright (c) 2026 lbwire developers" in shipped


# -- the version ------------------------------------------------------------------------------


def test_the_version_is_written_once_and_everything_agrees(
    wheel: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    version = lbwire.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    # pyproject.toml reads it from lbwire/__init__.py rather than repeat it.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^version\s*=\s*[\"']", pyproject, re.MULTILINE) is None
    assert 'version = { attr = "lbwire.__version__" }' in pyproject
    written = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "lbwire").rglob("*.py")
        if re.search(rf"[\"']{re.escape(version)}[\"']", path.read_text())
    ]
    assert written == ["lbwire/__init__.py"]
    # Everything that shows it.
    assert wheel_metadata(wheel)["Version"] == version
    assert wheel.name.startswith(f"lbwire-{version}-")
    assert ChannelConfig().user_agent == f"lbwire-grpc/{version}"
    with pytest.raises(SystemExit) as exited:
        cli_main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"lbwire {version}\n"


# -- public names -----------------------------------------------------------------------------

#: The functions of `lbwire.error` that are public API (for programs calling `lbwire.grpc`).
ERROR_FUNCTIONS = {"from_grpc_error"}
#: Helpers the rest of lbwire uses: importable from `lbwire.error`, never exported.
ERROR_HELPERS = {
    "decode_reply",
    "is_empty_partition_refusal",
    "is_reverse_end",
    "is_stop_reached",
    "malformed_reply",
    "may_resend",
    "more_hopeful",
    "no_broker_reachable",
    "publish_async_error",
    "refused_publish",
    "subscribe_error",
}


def test_lbwire_error_exports_only_its_exceptions_and_public_functions() -> None:
    from lbwire import error
    from lbwire.error import _decisions, _hierarchy

    # Every public class of the hierarchy (a private base groups some), and
    # nothing that is not public.
    exceptions = {
        name
        for name, value in vars(_hierarchy).items()
        if isinstance(value, type)
        and issubclass(value, error.LiftbridgeError)
        and not name.startswith("_")
    }
    assert len(exceptions) >= 30
    assert sorted(error.__all__) == sorted(exceptions | ERROR_FUNCTIONS)
    star: dict[str, object] = {}
    exec("from lbwire.error import *", star)
    assert set(star) - {"__builtins__"} == set(error.__all__)
    # The helpers stay where they were, for code that imported them.
    for name in ERROR_HELPERS:
        assert callable(getattr(error, name))
        assert getattr(error, name) is getattr(_decisions, name)


# -- the README's performance tables ----------------------------------------------------------

README_TABLES = ROOT / "scripts" / "readme_tables.py"


def test_readme_tables_are_those_of_the_results() -> None:
    run([sys.executable, str(README_TABLES), "--check"], cwd=ROOT)


def test_readme_tables_check_finds_a_stale_table_and_the_script_rewrites_it(
    tmp_path: Path,
) -> None:
    readme = tmp_path / "README.md"
    original = (ROOT / "README.md").read_text()
    row = next(line for line in original.splitlines() if line.startswith("| cursor set + get"))
    readme.write_text(original.replace(row, "| cursor set + get (pairs/s) | 1 | 2 |"))
    stale = subprocess.run(
        [sys.executable, str(README_TABLES), "--check", "--readme", str(readme)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert stale.returncode == 1
    assert "-| cursor set + get (pairs/s) | 1 | 2 |" in stale.stdout
    assert f"+{row}" in stale.stdout
    assert "stale tables" in stale.stderr
    run([sys.executable, str(README_TABLES), "--readme", str(readme)], cwd=tmp_path)
    assert readme.read_text() == original


def test_scenario_labels_are_written_only_in_the_benchmarks() -> None:
    # By path: the repository is not necessarily on the import path here.
    scenarios = runpy.run_path(str(ROOT / "benchmarks" / "_common.py"))["SCENARIOS"]
    hook = (ROOT / "docs" / "_hooks" / "benchmarks.py").read_text()
    script = README_TABLES.read_text()
    labels = [scenario["label"] for scenario in scenarios.values()]
    assert len(labels) == len(set(labels))
    assert not [label for label in labels if label in hook or label in script]


# -- installed alone in a fresh environment ---------------------------------------------------


@pytest.fixture(scope="module")
def wheel_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtual environment holding the wheel and its dependencies."""
    directory = tmp_path_factory.mktemp("venv") / "env"
    venv.create(directory, with_pip=True, symlinks=os.name != "nt")
    python = directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # Without the clean environment a PYTHONPATH naming the tree makes pip
    # find lbwire "already installed" there and skip the wheel.
    run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], env=clean_env())
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would find the working tree's lbwire."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def start_subscriber(python: Path, broker: str, stream: str, cwd: Path) -> subprocess.Popen[str]:
    env = clean_env(LIFTBRIDGE_BROKERS=broker, LIFTBRIDGE_STREAM=stream, LIFTBRIDGE_CURSOR="pkg")
    return subprocess.Popen(
        [str(python), str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )


#: The thread reading each subscriber's output (see `stop_subscriber`).
_pumps: dict[int, threading.Thread] = {}


def stop_subscriber(proc: subprocess.Popen[str]) -> None:
    """Kill the subscriber like a crash (no clean shutdown) and close its pipes.

    Its pipes are closed only once the thread reading its output has seen the
    end, so that no read runs on a closed file (and no pipe is left to the
    garbage collector: the suite turns ResourceWarning into an error).
    """
    proc.kill()
    proc.wait()
    reader = _pumps.pop(proc.pid, None)
    if reader is not None:
        reader.join(READ_TIMEOUT)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def read_offsets(proc: subprocess.Popen[str], until: int) -> list[int]:
    """The offsets of the subscriber's '<offset>: <value>' lines, up to ``until``."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    reader = threading.Thread(target=pump, daemon=True)
    _pumps[proc.pid] = reader
    reader.start()
    offsets: list[int] = []
    while not offsets or offsets[-1] < until:
        try:
            line = lines.get(timeout=READ_TIMEOUT)
        except queue.Empty:
            line = ""
        if not line:
            proc.kill()
            _, stderr = proc.communicate()
            raise AssertionError(f"subscriber stopped at {offsets}; stderr:\n{stderr}")
        offsets.append(int(line.split(":", 1)[0]))
    return offsets


async def prepare(broker: str, stream: str) -> None:
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream, wait_for_stream=True)
        await client.wait_for_cursors()


async def publish(broker: str, stream: str, offsets: range) -> None:
    async with LiftbridgeClient([broker]) as client:
        for i in offsets:
            await client.publish(f"message {i}".encode(), stream=stream)


async def stored_cursor(broker: str, stream: str) -> int:
    async with LiftbridgeClient([broker]) as client:
        return await client.get_cursor(stream, 0, "pkg")


@pytest.mark.slow
@pytest.mark.server
def test_wheel_alone_runs_the_cursor_example_against_a_real_server(
    wheel_env: Path,
    liftbridge_server: LiftbridgeServer,
    stream_name: str,
    tmp_path: Path,
) -> None:
    where = run(
        [str(wheel_env), "-c", "import lbwire; print(lbwire.__file__)"],
        cwd=tmp_path,
        env=clean_env(),  # a PYTHONPATH naming the tree would find its lbwire instead
    )
    assert Path(where.strip()).is_relative_to(wheel_env.parent.parent)
    installed = run([str(wheel_env), "-m", "pip", "list", "--format=freeze"], cwd=tmp_path)
    assert "grpcio" not in installed.lower()
    assert "protobuf" not in installed.lower()

    broker = liftbridge_server.broker
    anyio.run(prepare, broker, stream_name)
    anyio.run(publish, broker, stream_name, range(0, 5))
    first = start_subscriber(wheel_env, broker, stream_name, tmp_path)
    try:
        seen = read_offsets(first, 4)
    finally:
        stop_subscriber(first)
    assert seen == [0, 1, 2, 3, 4]
    cursor = anyio.run(stored_cursor, broker, stream_name)
    assert 1 <= cursor <= 5  # the kill may come before the last set_cursor

    anyio.run(publish, broker, stream_name, range(5, 8))
    second = start_subscriber(wheel_env, broker, stream_name, tmp_path)
    try:
        resumed = read_offsets(second, 7)
    finally:
        stop_subscriber(second)
    assert resumed == list(range(cursor, 8))


@pytest.mark.slow
@pytest.mark.server
def test_wheel_installs_the_lbwire_command(
    wheel_env: Path, liftbridge_server: LiftbridgeServer, stream_name: str, tmp_path: Path
) -> None:
    command = wheel_env.parent / ("lbwire.exe" if os.name == "nt" else "lbwire")
    env = clean_env(LBWIRE_BROKERS=liftbridge_server.broker)
    published = subprocess.run(
        [str(command), "pub", stream_name, "--create"],
        input="".join(f"{i}\n" for i in range(1, 1001)),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=PIP_TIMEOUT,
        check=False,
    )
    assert published.returncode == 0, published.stderr
    assert "published 1,000 messages" in published.stderr
    read = run(
        [str(command), "sub", stream_name, "--from", "earliest", "--count", "1000"],
        env=env,
        cwd=tmp_path,
    )
    assert read.split() == [str(i) for i in range(1, 1001)]


# -- grpcio is never imported -----------------------------------------------------------------

_USE_EVERYTHING = """
import sys
import anyio
from lbwire.client import LiftbridgeClient, StartPosition, StopPosition

async def main(broker, stream):
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream, wait_for_stream=True)
        await client.publish(b"one", stream=stream)
        await (await client.publish_async(b"two", stream=stream))
        got = [m.value async for m in client.subscribe(
            stream, start_position=StartPosition.EARLIEST,
            stop_position=StopPosition.STOP_LATEST)]
        assert got == [b"one", b"two"], got
        await client.wait_for_cursors()
        await client.set_cursor(stream, 0, "c", 1)
        assert await client.get_cursor(stream, 0, "c") == 2

broker, stream, backend = sys.argv[1:]
anyio.run(main, broker, stream, backend=backend)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "gufo"))
assert not leaked, leaked
print("ok")
"""


@pytest.mark.server
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_using_lbwire_never_imports_grpc(
    liftbridge_server: LiftbridgeServer, stream_name: str, backend: str, tmp_path: Path
) -> None:
    # A process of its own: this one may have imported grpcio for other tests.
    script = tmp_path / "use_lbwire.py"
    script.write_text(_USE_EVERYTHING)
    out = run(
        [sys.executable, str(script), liftbridge_server.broker, stream_name, backend],
        cwd=tmp_path,
    )
    assert out.strip() == "ok"


def test_importing_every_lbwire_module_never_imports_grpc(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, sys, lbwire\n"
        "assert 'grpc' not in sys.modules\n"
        "for info in pkgutil.walk_packages(lbwire.__path__, 'lbwire.'):\n"
        "    importlib.import_module(info.name)\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'gufo'))\n"
        "assert not leaked, leaked\n"
    )
    run([sys.executable, "-c", code], cwd=tmp_path)


@pytest.fixture(autouse=True)
def _no_stray_build_output() -> Iterator[None]:
    """Building must not write into the working tree."""
    before = {p.name for p in ROOT.iterdir()}
    yield
    assert {"build", "dist"}.isdisjoint({p.name for p in ROOT.iterdir()} - before)
