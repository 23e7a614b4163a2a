"""Helpers of the gufo-liftbridge compatibility tests.

* `ProgramRun`: a Python program run as a child process whose stdout is read
  line by line, with bounded waits (a reader thread feeds a queue; every wait
  is on that queue, never a sleep).
* `gufo_to_lbwire`/`changed_lines`: the import-only rewrite that turns a
  gufo-liftbridge program into an lbwire one, and the check that nothing else
  changed.
* Small async helpers run on the test's side with lbwire's client.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from lbwire.client import LiftbridgeClient
from lbwire.types import StartPosition

#: Seconds any single wait on a child program may take before the test fails.
WAIT = 30.0

_IMPORT_LINE = re.compile(r"^\s*(from|import)\s+gufo\.liftbridge\b")


def gufo_to_lbwire(source: str) -> str:
    """Rewrite the gufo-liftbridge import lines of `source` to lbwire, nothing else."""
    lines = source.splitlines(keepends=True)
    return "".join(
        line.replace("gufo.liftbridge", "lbwire") if _IMPORT_LINE.match(line) else line
        for line in lines
    )


def changed_lines(before: str, after: str) -> List[Tuple[str, str]]:
    """Return the (before, after) pairs of lines that differ; both must have as many lines."""
    old, new = before.splitlines(), after.splitlines()
    diff = "\n".join(difflib.unified_diff(old, new, "before", "after", lineterm=""))
    assert len(old) == len(new), f"line count changed:\n{diff}"
    return [(a, b) for a, b in zip(old, new) if a != b]


def child_env(**extra: str) -> Dict[str, str]:
    """Environment of a child program: ours, unbuffered output, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # print() reaches the pipe at once
    env.update(extra)
    return env


class ProgramRun:
    """A Python program running as a child process; its stdout read by lines.

    Use as a context manager: leaving the block stops the child if it still
    runs (SIGINT, so it can clean up, then SIGKILL). With `own_group`, the
    child gets its own process group and both signals go to the whole group
    (the child and any programs it started). stderr goes to a file, shown in
    assertion messages.
    """

    def __init__(
        self,
        script: Path,
        *,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        label: Optional[str] = None,
        cwd: Optional[Path] = None,
        own_group: bool = False,
    ) -> None:
        self.label = label or script.name
        self._own_group = own_group
        fd, name = tempfile.mkstemp(prefix=f"{script.stem}-", suffix=".stderr")
        self._stderr_path = Path(name)
        self._stderr = os.fdopen(fd, "w")
        self._stderr_text: Optional[str] = None  # set once the child is reaped
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            start_new_session=own_group,
        )
        #: Every stdout line read so far (without the newline).
        self.lines: List[str] = []
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def stderr_text(self) -> str:
        if self._stderr_text is not None:
            return self._stderr_text
        return self._stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        """What the program printed so far, for assertion messages."""
        out = "\n".join(self.lines[-40:]) or "(nothing)"
        return (
            f"{self.label} (exit status {self.process.poll()}) printed:\n{out}\n"
            f"stderr:\n{self.stderr_text()[-4000:] or '(nothing)'}"
        )

    def next_line(self, deadline: float) -> Optional[str]:
        """The next stdout line, or None at end of output; fails past `deadline`."""
        if self._eof:
            return None
        remaining = deadline - time.monotonic()
        try:
            line = self._queue.get(timeout=max(0.0, remaining))
        except queue.Empty:
            raise AssertionError(f"timed out waiting for output; {self.describe()}") from None
        if line is None:
            self._eof = True
            return None
        self.lines.append(line)
        return line

    def read_until(self, done: Callable[[str], bool], timeout: float = WAIT) -> List[str]:
        """Read lines until one satisfies `done`; return the lines read by this call."""
        deadline = time.monotonic() + timeout
        got: List[str] = []
        while True:
            line = self.next_line(deadline)
            if line is None:
                raise AssertionError(f"output ended before the awaited line; {self.describe()}")
            got.append(line)
            if done(line):
                return got

    def read_to_end(self, timeout: float = WAIT) -> List[str]:
        """Read until the child closes stdout; return the lines read by this call."""
        deadline = time.monotonic() + timeout
        got: List[str] = []
        while True:
            line = self.next_line(deadline)
            if line is None:
                return got
            got.append(line)

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the child to exit on its own; return its exit status."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit in {timeout} s; {self.describe()}") from None
        self.read_to_end()
        self._reap()
        return code

    def _signal(self, signum: int) -> None:
        if self.process.poll() is not None:
            return
        if self._own_group:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def kill(self) -> List[str]:
        """SIGKILL the child (like a crash); return the lines it printed before dying."""
        self._signal(signal.SIGKILL)
        self.process.wait(WAIT)
        rest = self.read_to_end()
        self._reap()
        return rest

    def stop(self, grace: float = 15.0) -> None:
        """Interrupt the child (SIGINT) so it can clean up; SIGKILL it after `grace` s."""
        self._signal(signal.SIGINT)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(WAIT)
        self.read_to_end()
        self._reap()

    def _reap(self) -> None:
        if self._stderr_text is not None:
            return
        if self.process.stdout is not None:
            self._reader.join(WAIT)
            self.process.stdout.close()
        self._stderr.close()
        self._stderr_text = self._stderr_path.read_text(errors="replace")
        self._stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> ProgramRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.stop()
        else:
            self.process.wait()
            self._reap()


def parse_offset_line(line: str) -> Tuple[int, str]:
    """Split a subscriber's `"<offset>: <value repr>"` line."""
    offset, _, value = line.partition(": ")
    return int(offset), value


def offset_at_least(n: int) -> Callable[[str], bool]:
    return lambda line: parse_offset_line(line)[0] >= n


# --------------------------------------------------------------------------
# The test's own side of the conversation, through lbwire.


async def prepare_stream(broker: str, stream: str, values: Sequence[bytes]) -> None:
    """Create `stream` (1 partition), wait for it and the cursors, publish `values`."""
    async with LiftbridgeClient([broker]) as client:
        await client.create_stream(stream, wait_for_stream=True)
        await client.wait_for_cursors()
        await publish_values(client, stream, values)


async def publish_values(client: LiftbridgeClient, stream: str, values: Sequence[bytes]) -> None:
    for value in values:
        await client.publish(value, stream=stream, partition=0)


async def publish_more(broker: str, stream: str, values: Sequence[bytes]) -> None:
    async with LiftbridgeClient([broker]) as client:
        await publish_values(client, stream, values)


async def read_cursor(broker: str, stream: str, cursor_id: str) -> int:
    async with LiftbridgeClient([broker]) as client:
        return await client.get_cursor(stream, 0, cursor_id)


def _varint_fields(data: bytes) -> Dict[int, object]:
    """Decode a flat protobuf message of varint and length-delimited fields."""
    fields: Dict[int, object] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        tag = varint()
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            fields[number] = varint()
        elif wire_type == 2:
            size = varint()
            fields[number] = data[i : i + size]
            i += size
        else:  # pragma: no cover - the cursor record has no other kinds
            raise ValueError(f"unexpected wire type {wire_type}")
    return fields


async def cursor_history(broker: str, stream: str, cursor_id: str) -> List[int]:
    """Every value ever stored in a cursor, oldest first, read from `__cursors`.

    The server keeps cursors as records (Liftbridge's internal `Cursor`
    message: stream=1, partition=2, cursorId=3, offset=4) in the `__cursors`
    stream; the test servers have one cursor partition.
    """
    key = f"{cursor_id},{stream},0".encode()
    async with LiftbridgeClient([broker]) as client:
        meta = await client.get_partition_metadata("__cursors", 0)
        if meta.newest_offset < 0:
            return []
        values: List[int] = []
        async for msg in client.subscribe(
            "__cursors",
            partition=0,
            start_position=StartPosition.EARLIEST,
            stop_offset=meta.newest_offset,
        ):
            if msg.key == key:
                values.append(int(_varint_fields(msg.value).get(4, 0)))  # type: ignore[call-overload]
        return values
