"""Scale curves: how throughput and client CPU per message grow, for every client in one run.

    python -m benchmarks.scale [--quick] [--clients a,b] [--curves partitions,size,in_flight]

Three curves, each point a fresh worker process per client (the workers of
`python -m benchmarks`, so the same clients: lbwire, gufo-liftbridge, Go):

* `partitions`: one client subscribed to 1, 4, 16 and 64 partitions of one
  stream at once, reading the same number of messages from each;
* `size`: one subscription reading messages of 16 B to 64 KiB;
* `in_flight`: pipelined acked publishing with 1 to 1,000 publishes awaiting
  their acks (gufo-liftbridge: `publish_bulk` in batches of that size).

Client CPU per message is the worker process's user + system CPU time (from
the operating system, after it exited), less that of a worker of the same
client that only starts, imports and connects (its median of three), divided
by the messages it handled. Writes `scale.json` and `scale.png` next to
`latest.json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ._common import CLIENTS, GO, PYPY, pypy_python
from .run import ROOT, log, run_worker, worker_argv

#: The curves: their points, and the messages one point handles (full, quick).
CURVES: Dict[str, Dict[str, Any]] = {
    "partitions": {"points": (1, 4, 16, 64), "per_partition": (4_000, 100)},
    "size": {
        "points": (16, 256, 1024, 4096, 16384, 65536),
        # Bounded by count and by bytes: 64 KiB messages are fewer.
        "count": (100_000, 1_000),
        "bytes": (256 << 20, 8 << 20),
    },
    "in_flight": {"points": (1, 10, 100, 1000), "count": (5_000, 200)},
}
PARTITIONED = "lbbench-scale-partitions"
MAX_PARTITIONS = 64


def size_stream(size: int) -> str:
    return f"lbbench-scale-{size}B"


def size_count(size: int, quick: bool) -> int:
    spec = CURVES["size"]
    i = 1 if quick else 0
    return int(min(spec["count"][i], spec["bytes"][i] // size))


async def prepare(
    broker: str, nats: Optional[Tuple[str, int]], quick: bool, curves: List[str]
) -> None:
    """Create and fill the streams the curves read."""
    from lbwire.client import LiftbridgeClient

    from .seed import ensure_stream, fill

    i = 1 if quick else 0
    async with LiftbridgeClient([broker]) as client:
        if "partitions" in curves:
            per = CURVES["partitions"]["per_partition"][i]
            for partition in range(MAX_PARTITIONS):
                await fill(
                    client,
                    PARTITIONED,
                    per,
                    100,
                    nats,
                    log,
                    partition=partition,
                    partitions=MAX_PARTITIONS,
                )
        if "size" in curves:
            for size in CURVES["size"]["points"]:
                await fill(client, size_stream(size), size_count(size, quick), size, nats, log)
        if "in_flight" in curves:
            await ensure_stream(client, "lbbench-scale-publish")


def jobs(curve: str, quick: bool) -> List[Tuple[int, Dict[str, Any], int]]:
    """(point, job, messages the job handles) for each point of `curve`."""
    i = 1 if quick else 0
    out: List[Tuple[int, Dict[str, Any], int]] = []
    for point in CURVES[curve]["points"]:
        if curve == "partitions":
            per = CURVES[curve]["per_partition"][i]
            job = {
                "scenario": "subscribe_partitions",
                "stream": PARTITIONED,
                "partitions": point,
                "count": per,
            }
            messages = per * point
        elif curve == "size":
            count = size_count(point, quick)
            job = {"scenario": "subscribe", "stream": size_stream(point), "count": count}
            messages = count
        else:
            count = CURVES[curve]["count"][i]
            job = {
                "scenario": "publish_pipelined",
                "stream": "lbbench-scale-publish",
                "count": count,
                "in_flight": point,
                "size": 100,
            }
            messages = count
        job.update(reps=1, timeout=600)
        out.append((point, job, messages))
    return out


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chart(report: Dict[str, Any], path: Path) -> Optional[str]:
    """Throughput and CPU per message against each curve's variable; None if drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]')"
    curves = [c for c in CURVES if c in report["curves"]]
    fig, axes = plt.subplots(2, len(curves), figsize=(5 * len(curves), 8), squeeze=False)
    labels = {
        "partitions": "partitions subscribed at once",
        "size": "message size (bytes)",
        "in_flight": "publishes in flight",
    }
    for col, curve in enumerate(curves):
        for client, points in report["curves"][curve].items():
            xs = [p["point"] for p in points]
            axes[0][col].plot(xs, [p["msgs_per_s"] for p in points], marker="o", label=client)
            axes[1][col].plot(xs, [p["cpu_us_per_msg"] for p in points], marker="o", label=client)
        for row, ylabel in enumerate(("messages/s", "client CPU µs per message")):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(labels[curve])
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][col].legend(fontsize=8)
    fig.suptitle(f"Scale curves ({report['date']}, {report['server']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--clients", help=f"comma-separated subset of {','.join(CLIENTS)}")
    parser.add_argument("--curves", help=f"comma-separated subset of {','.join(CURVES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--server", choices=["v1.9.0", "newest"], default=None)
    args = parser.parse_args(argv)
    clients = [c for c in CLIENTS if not args.clients or c in args.clients.split(",")]
    curves = [c for c in CURVES if not args.curves or c in args.curves.split(",")]

    import anyio

    from lbwire.testing import LiftbridgeServer, binary_version, find_liftbridge

    from . import go_client

    skipped: Dict[str, str] = {}
    go_binary: Optional[str] = None
    if GO in clients:
        go_binary, reason = go_client.build()
        if go_binary is None:
            skipped[GO] = reason
            clients.remove(GO)
    if PYPY in clients and pypy_python(str(ROOT)) is None:
        skipped[PYPY] = "no PyPy environment (see benchmarks/README.md)"
        clients.remove(PYPY)

    started = time.perf_counter()
    binary = find_liftbridge(version=args.server)
    server = LiftbridgeServer(binary=binary, version=args.server)
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    notes: Dict[str, str] = {}
    try:
        server.start()
        log(f"Liftbridge {binary_version(binary)} on {server.broker}; filling the streams...")
        anyio.run(prepare, server.broker, (server.host, server.nats_port), args.quick, curves)
        baseline: Dict[str, float] = {}
        for client in clients:
            job = {"scenario": "connect", "broker": server.broker, "reps": 1, "timeout": 60}
            spent = []
            for _ in range(3):
                before = children_cpu()
                run_worker(worker_argv(client, job, go_binary), 80.0)
                spent.append(children_cpu() - before)
            baseline[client] = sorted(spent)[1]
            log(f"  {client:<15} start, import and connect: {baseline[client] * 1000:.0f} ms CPU")
        for curve in curves:
            log(curve)
            for point, job, messages in jobs(curve, args.quick):
                for client in clients:
                    job = dict(job, broker=server.broker)
                    before = children_cpu()
                    result = run_worker(worker_argv(client, job, go_binary), 620.0)
                    cpu = max(0.0, children_cpu() - before - baseline[client])
                    if "samples" not in result:
                        text = result.get("skipped") or result.get("error") or "no result"
                        notes[f"{curve}/{point}/{client}"] = str(text)[:300]
                        log(f"  {point:>6} {client:<15} {str(text)[:120]}")
                        continue
                    rate = float(result["samples"][0])
                    entry = {
                        "point": point,
                        "msgs_per_s": round(rate, 1),
                        "cpu_us_per_msg": round(cpu / messages * 1e6, 2),
                        "messages": messages,
                    }
                    results.setdefault(curve, {}).setdefault(client, []).append(entry)
                    log(
                        f"  {point:>6} {client:<15} {rate:12,.0f} msgs/s"
                        f"  {entry['cpu_us_per_msg']:8.1f} µs CPU/msg"
                    )
    finally:
        server.close()
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": f"Liftbridge {binary_version(binary)}",
        "mode": "quick" if args.quick else "full",
        "duration_s": round(time.perf_counter() - started, 1),
        "curves": results,
        "baseline_cpu_ms": {c: round(v * 1000, 1) for c, v in baseline.items()},
        "notes": notes,
        "skipped_clients": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    why_not = chart(report, args.out / "scale.png")
    log(
        f"Wrote {args.out / 'scale.json'}"
        + (f"; no chart: {why_not}" if why_not else " and scale.png")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
