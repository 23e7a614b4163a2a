"""Benchmark worker for lbwire: one job, on asyncio, asyncio+uvloop or trio.

    python -m benchmarks.workers.lbwire_worker BACKEND JOB_JSON

BACKEND is ``asyncio``, ``uvloop`` or ``trio``. Imports lbwire and its event
loop library only (no grpcio). See ``benchmarks/_common.py`` for the job and
result formats.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections import deque
from typing import Any, Deque, Dict, List

from benchmarks._common import emit, payload, peak_rss_mb, percentile, read_job


def _cpu_per_message(extra: Dict[str, Any], since: float, count: int) -> None:
    """Append the CPU microseconds per message since `since` (`time.process_time`)."""
    spent = time.process_time() - since
    extra.setdefault("cpu_us_per_msg", []).append(round(spent / count * 1e6, 2))


async def _subscribe_count(
    client: Any, stream: str, count: int, each: Any = None, partition: int = 0
) -> float:
    """Read `count` messages from the start of `stream`; seconds taken."""
    from lbwire.client import StartPosition

    received = 0
    start = time.perf_counter()
    messages = client.subscribe(stream, partition=partition, start_position=StartPosition.EARLIEST)
    try:
        async for _ in messages:
            received += 1
            if each is not None:
                each(received)
            if received >= count:
                break
    finally:
        await messages.aclose()
    return time.perf_counter() - start


async def _table(client: Any, scenario: str, stream: str, count: int, value: bytes) -> float:
    """Puts (each a compare-and-set on the last one's revision) or gets of one key, per second."""
    from lbwire.table import ABSENT

    async with client.table(stream) as table:
        entry = await table.get(b"bench")
        revision = ABSENT if entry is None else entry.revision
        revision = await table.put(b"bench", value, expected=revision)
        start = time.perf_counter()
        if scenario == "table_put":
            for _ in range(count):
                revision = await table.put(b"bench", value, expected=revision)
        else:
            for _ in range(count):
                await table.get(b"bench")
        return count / (time.perf_counter() - start)


async def _batches_count(client: Any, stream: str, count: int, job: Dict[str, Any]) -> float:
    """Read `count` messages from the start of `stream` with `batched`; seconds taken."""
    from lbwire.client import StartPosition
    from lbwire.reader import batched

    received = 0
    start = time.perf_counter()
    subscription = client.subscribe(stream, start_position=StartPosition.EARLIEST)
    async with batched(subscription, int(job["max_count"]), float(job["max_wait"])) as batches:
        async for batch in batches:
            received += len(batch)
            if received >= count:
                break
    return time.perf_counter() - start


async def _stream_count(client: Any, stream: str, count: int, job: Dict[str, Any]) -> float:
    """Read `count` messages with the whole-stream reader (in batches or not); seconds taken."""
    received = 0
    start = time.perf_counter()
    async with client.reader(stream) as reader:
        if job.get("batches"):
            async for batch in reader.batches(int(job["max_count"]), float(job["max_wait"])):
                received += len(batch)
                if received >= count:
                    break
        else:
            async for _ in reader:
                received += 1
                if received >= count:
                    break
    return time.perf_counter() - start


async def run_job(job: Dict[str, Any]) -> Dict[str, Any]:
    import anyio

    from lbwire.client import AckPolicy, LiftbridgeClient, StartPosition

    scenario = job["scenario"]
    broker = job["broker"]
    stream = job.get("stream", "")
    count = int(job.get("count", 0))
    reps = max(1, int(job.get("reps", 1)))
    value = payload(int(job.get("size", 100)))
    samples: List[float] = []
    extra: Dict[str, Any] = {}

    with anyio.fail_after(float(job.get("timeout", 300))):
        if scenario == "first_message":
            for _ in range(reps):
                start = time.perf_counter()
                async with LiftbridgeClient([broker]) as client:
                    messages = client.subscribe(stream, start_position=StartPosition.EARLIEST)
                    try:
                        async for _ in messages:
                            break
                    finally:
                        await messages.aclose()
                    samples.append((time.perf_counter() - start) * 1000.0)
            return {"samples": samples, "unit": "ms"}

        async with LiftbridgeClient([broker]) as client:
            await client.get_metadata()  # connected, metadata cached: not timed
            # Warm-up repetitions first (PyPy's JIT compiles the path in the
            # first thousands of calls): measured and reported apart.
            warmup = int(job.get("warmup_reps", 0))
            for rep in range(warmup + reps):
                # The read scenarios also give this process's CPU per message
                # (user + system, all threads): what batches are meant to save.
                cpu = time.process_time()
                if scenario == "subscribe":
                    samples.append(count / await _subscribe_count(client, stream, count))
                    unit = "msgs/s"
                    _cpu_per_message(extra, cpu, count)
                elif scenario == "subscribe_batches":
                    samples.append(count / await _batches_count(client, stream, count, job))
                    unit = "msgs/s"
                    _cpu_per_message(extra, cpu, count)
                elif scenario == "subscribe_stream":
                    # `count` messages of each partition, through one reader.
                    total = count * int(job["partitions"])
                    samples.append(total / await _stream_count(client, stream, total, job))
                    unit = "msgs/s"
                    _cpu_per_message(extra, cpu, total)
                elif scenario == "connect":
                    # Only start, import and connect: the CPU baseline of a worker.
                    unit = "none"
                elif scenario == "subscribe_partitions":
                    # `count` messages from each of partitions 0..k-1 at once.
                    start = time.perf_counter()
                    async with anyio.create_task_group() as tg:
                        for p in range(int(job["partitions"])):
                            tg.start_soon(_subscribe_count, client, stream, count, None, p)
                    took = time.perf_counter() - start
                    samples.append(count * int(job["partitions"]) / took)
                    unit = "msgs/s"
                elif scenario == "subscribe_rss":
                    every = max(1, count // max(1, int(job.get("checkpoints", 10))))
                    marks: List[float] = []

                    def mark(n: int, every: int = every, marks: List[float] = marks) -> None:
                        if n % every == 0:
                            marks.append(round(peak_rss_mb(), 2))

                    await _subscribe_count(client, stream, count, mark)
                    samples.append(peak_rss_mb())
                    extra["checkpoints_mb"] = marks
                    unit = "MB"
                elif scenario == "publish_unacked":
                    start = time.perf_counter()
                    for _ in range(count):
                        await client.publish(value, stream=stream, ack_policy=AckPolicy.NONE)
                    samples.append(count / (time.perf_counter() - start))
                    unit = "msgs/s"
                elif scenario == "publish_acked":
                    latencies = []
                    clock = time.perf_counter
                    start = clock()
                    for _ in range(count):
                        t = clock()
                        await client.publish(value, stream=stream, ack_policy=AckPolicy.LEADER)
                        latencies.append((clock() - t) * 1000.0)
                    samples.append(count / (clock() - start))
                    extra.setdefault("p99_ms", []).append(percentile(latencies, 99))
                    unit = "msgs/s"
                elif scenario == "publish_pipelined":
                    in_flight = int(job.get("in_flight", 1000))
                    pending: Deque[Any] = deque()
                    start = time.perf_counter()
                    for _ in range(count):
                        if len(pending) >= in_flight:
                            await pending.popleft()
                        pending.append(await client.publish_async(value, stream=stream))
                    while pending:
                        await pending.popleft()
                    samples.append(count / (time.perf_counter() - start))
                    unit = "msgs/s"
                elif scenario == "publish_batch":
                    batch = int(job.get("batch", 1000))
                    sent: List[Any] = []
                    start = time.perf_counter()
                    for first in range(0, count, batch):
                        values = [value] * min(batch, count - first)
                        sent.extend(await client.publish_batch(values, stream=stream))
                    await client.flush()
                    for item in sent:  # every ack read: none failed
                        await item
                    samples.append(count / (time.perf_counter() - start))
                    unit = "msgs/s"
                elif scenario == "publish_fire_and_forget":
                    start = time.perf_counter()
                    for _ in range(count):
                        await client.publish_async(value, stream=stream, ack_policy=AckPolicy.NONE)
                    # Returned once queued, as Go's Publish with AckPolicyNone.
                    samples.append(count / (time.perf_counter() - start))
                    unit = "msgs/s"
                    # Drained before the next round (untimed): the server
                    # answers in order, so this ack comes after the rest.
                    await client.publish(value, stream=stream)
                    if client.publish_errors:
                        return {"error": f"{client.publish_errors} publishes refused"}
                elif scenario == "publish_settled":
                    start = time.perf_counter()
                    for _ in range(count):
                        await client.publish(value, stream=stream, settle=True)
                    samples.append(count / (time.perf_counter() - start))
                    unit = "msgs/s"
                elif scenario in ("table_put", "table_get"):
                    samples.append(await _table(client, scenario, stream, count, value))
                    unit = "ops/s"
                elif scenario == "cursor_roundtrip":
                    cursor_id = job["cursor_id"]
                    start = time.perf_counter()
                    for i in range(count):
                        await client.set_cursor(stream, 0, cursor_id, i)
                        await client.get_cursor(stream, 0, cursor_id)
                    samples.append(count / (time.perf_counter() - start))
                    unit = "pairs/s"
                else:
                    return {"error": f"unknown scenario {scenario!r}"}
                if rep < warmup:
                    extra.setdefault("warmup", []).append(samples.pop())
                    if extra.get("p99_ms"):
                        extra.setdefault("warmup_p99_ms", []).append(extra["p99_ms"].pop())
    return {"samples": samples, "unit": unit, "extra": extra}


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.workers.lbwire_worker BACKEND JOB_JSON")
    backend = sys.argv[1]
    job = read_job(sys.argv[2:])
    import anyio

    options: Dict[str, Any] = {}
    if backend == "uvloop":
        try:
            import uvloop
        except ImportError:
            emit({"skipped": "uvloop is not installed (pip install '.[bench]')"})
            return
        options = {"loop_factory": uvloop.new_event_loop}
        backend = "asyncio"
    elif backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            emit({"skipped": "trio is not installed (pip install '.[trio]')"})
            return
    try:
        result = anyio.run(run_job, job, backend=backend, backend_options=options)
    except BaseException as exc:  # report, never hang or die silently
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)


if __name__ == "__main__":
    main()
