"""Benchmark worker for gufo-liftbridge 0.2.0 (grpcio) on asyncio.

    python -m benchmarks.workers.gufo_worker JOB_JSON

gufo-liftbridge retries forever on errors, so every job runs under
`asyncio.timeout`; the orchestrator kills the process if even that fails.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any, Dict, List

from benchmarks._common import emit, payload, peak_rss_mb, read_job

CANNOT = {
    "publish_acked": "gufo-liftbridge's publish sends no deadline, so it cannot wait for an ack",
    "subscribe_batches": "gufo-liftbridge has no batches",
}


async def _subscribe_count(
    client: Any, stream: str, count: int, each: Any = None, partition: int = 0
) -> float:
    from gufo.liftbridge.client import StartPosition

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


async def run_job(job: Dict[str, Any]) -> Dict[str, Any]:
    from gufo.liftbridge.client import LiftbridgeClient, StartPosition

    scenario = job["scenario"]
    if scenario in CANNOT:
        return {"skipped": CANNOT[scenario]}
    if scenario == "subscribe_stream":
        if not job.get("batches"):
            # No batches either way: its figure is subscribe_stream_16p's.
            return {"skipped": "a task per partition, as in subscribe_stream_16p"}
        scenario = "subscribe_partitions"  # one task per partition
    broker = job["broker"]
    stream = job.get("stream", "")
    count = int(job.get("count", 0))
    reps = max(1, int(job.get("reps", 1)))
    value = payload(int(job.get("size", 100)))
    samples: List[float] = []
    extra: Dict[str, Any] = {}

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
        for _ in range(reps):
            if scenario == "subscribe":
                samples.append(count / await _subscribe_count(client, stream, count))
                unit = "msgs/s"
            elif scenario == "connect":
                # Only start, import and connect: the CPU baseline of a worker.
                unit = "none"
            elif scenario == "subscribe_partitions":
                # `count` messages from each of partitions 0..k-1 at once.
                partitions = int(job["partitions"])
                start = time.perf_counter()
                await asyncio.gather(
                    *(_subscribe_count(client, stream, count, None, p) for p in range(partitions))
                )
                samples.append(count * partitions / (time.perf_counter() - start))
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
                # gufo sends no deadline, so the server never waits for the ack.
                start = time.perf_counter()
                for _ in range(count):
                    await client.publish(value, stream=stream)
                samples.append(count / (time.perf_counter() - start))
                unit = "msgs/s"
            elif scenario == "publish_settled":
                return {"skipped": "n/a: gufo-liftbridge does not settle an ambiguous publish"}
            elif scenario in ("table_put", "table_get"):
                return {"skipped": "n/a: gufo-liftbridge has no key-value table"}
            elif scenario == "publish_fire_and_forget":
                return {"skipped": "no fire-and-forget path: publish waits for the reply"}
            elif scenario in ("publish_pipelined", "publish_batch"):
                # gufo's only pipelined API: publish_bulk, one PublishAsync call
                # per batch of `in_flight` requests, waiting for their acks.
                in_flight = int(job.get("in_flight", 1000))
                start = time.perf_counter()
                left = count
                while left > 0:
                    batch = min(in_flight, left)
                    requests = [
                        client.get_publish_request(value, stream=stream) for _ in range(batch)
                    ]
                    async for _ in client.publish_bulk(requests):
                        pass
                    left -= batch
                samples.append(count / (time.perf_counter() - start))
                unit = "msgs/s"
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
    return {"samples": samples, "unit": unit, "extra": extra}


async def _bounded(job: Dict[str, Any]) -> Dict[str, Any]:
    return await asyncio.wait_for(run_job(job), float(job.get("timeout", 300)))


def main() -> None:
    job = read_job()
    try:
        result = asyncio.run(_bounded(job))
    except BaseException as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    emit(result)


if __name__ == "__main__":
    main()
