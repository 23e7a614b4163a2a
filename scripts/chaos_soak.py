"""Chaos soak: lbwire against a three-node Liftbridge cluster whose nodes fail.

Not a test (no CI, no pytest): a long run that a release is checked with.
It starts a three-node cluster with ``lbwire.testing.LiftbridgeCluster`` on
127.0.0.1 (failure detection tuned as the failover tests tune it), then, for
``--minutes``, runs in one process on one backend:

- one AckPolicy.ALL producer per partition, recording every acked message
  (partition, offset and a unique id carried in the value);
- one cursor subscriber per partition (StartPosition.RESUME with a cursor id,
  ``set_cursor`` as it goes; it subscribes again when its subscription raises);
- a consumer group of ``--members`` members, each with a client of its own;

while one node at a time is SIGKILLed (and restarted on its data), restarted
(SIGINT, then started again) or frozen (SIGSTOP, then SIGCONT), at random
(seeded) with random durations and pauses; the next fault waits until every
partition has all three replicas in sync again.

With ``--settle`` the stream has optimistic concurrency control and the
producers publish with ``settle=True``: a publish that raised must then not be
stored (``ErrorNotStored`` is counted apart), and none may be stored twice.

It passes when no acked message is lost (every partition read from its
earliest offset at the end), no producer or subscriber goes without progress
for longer than the longest fault plus 30 s, every exception lbwire raised is a
LiftbridgeError, and memory and descriptors are flat (after the first two
minutes RSS grows by less than 10%; open descriptors end within 5 of the
start). It prints summary lines and exits 1 on FAIL (2 if the harness itself
broke, 3 if the watchdog had to end a hung run).

    python scripts/chaos_soak.py --backend asyncio --server v1.9.0 --minutes 20

The server binary is found as lbwire.testing finds it (``--server`` picks the
generation; ``LIFTBRIDGE_BIN`` is used when it is of that generation).
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from array import array
from collections import Counter
from pathlib import Path
from typing import Optional

import anyio

ROOT = Path(__file__).resolve().parent.parent
# The checkout's lbwire, and the failover tests' server tuning and helpers.
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cluster")]

from cluster_support import FAST_FAILOVER  # noqa: E402
from helpers import aclosing  # noqa: E402

from lbwire import LiftbridgeClient, LiftbridgeError, StartPosition, StopPosition  # noqa: E402
from lbwire.consumer import AutoOffset  # noqa: E402
from lbwire.error import ErrorNotStored  # noqa: E402
from lbwire.testing import LiftbridgeCluster, LiftbridgeStartError  # noqa: E402
from lbwire.testing._process import live_processes  # noqa: E402
from lbwire.types import AckPolicy, Message  # noqa: E402

STREAM = "soak"
GROUP = "soak-group"
CURSORS_STREAM = "__cursors"
# Members notice a dead coordinator in seconds (v1.9.0 defaults: 15 s each).
GROUP_TIMEOUTS = {"groups.consumer.timeout": "2s", "groups.coordinator.timeout": "2s"}
HANG_MARGIN = 30.0
RSS_GROWTH_LIMIT = 0.10
FD_SLACK = 5
WARMUP = 120.0
#: LiftbridgeClient's default pool of subscription connections per broker.
MAX_CONNS_PER_BROKER = 2
#: Flags per published message (one byte each, indexed by its sequence number).
SUBSCRIBED, GROUPED, STORED = 1, 2, 4


def log(text: str) -> None:
    """Print a timestamped progress line."""
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def fix_mmap_threshold() -> bool:
    """Have glibc return every large freed block to the system at once.

    The harness itself allocates large short-lived buffers (lbwire.testing
    reads the servers' growing logs in worker threads to see that the cluster
    is ready). glibc raises its mmap threshold after such a block is freed and
    keeps later ones in its heaps, so RSS would grow with the logs' size, not
    with lbwire. A fixed threshold (M_MMAP_THRESHOLD, 128 KiB) stops that.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024))
    except (OSError, AttributeError):
        return False  # not glibc: RSS is measured as it is


def rss_bytes() -> int:
    """Return the resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds(ports: frozenset[int] = frozenset()) -> tuple[int, int]:
    """How many file descriptors this process has open, and how many are TCP to `ports`."""
    remote: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    remote[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
        except OSError:
            pass
    total = to_ports = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor listdir used, now closed
        total += 1
        if target.startswith("socket:[") and remote.get(target[8:-1]) in ports:
            to_ports += 1
    return total, to_ports


class Progress:
    """When a task last made progress, and its longest stall so far."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.last = time.monotonic()
        self.max_stall = 0.0
        self.count = 0
        self.frozen_at: Optional[float] = None

    def tick(self) -> None:
        """Record progress now."""
        now = time.monotonic()
        if self.frozen_at is None:
            self.max_stall = max(self.max_stall, now - self.last)
        self.last = now
        self.count += 1

    def stall(self, now: float) -> float:
        """The longest stall, the one in progress included."""
        return max(self.max_stall, (self.frozen_at or now) - self.last)

    def freeze(self) -> None:
        """Stop counting stalls (producers stopped: nothing more to read)."""
        if self.frozen_at is None:
            self.frozen_at = time.monotonic()


class Ledger:
    """What happened to one partition's messages, indexed by sequence number."""

    def __init__(self) -> None:
        self.offsets = array("q")  # acked offset, -1 while not acked
        self.flags = bytearray()
        self.subscriber_dups = 0
        self.group_dups = 0
        self.stored_twice = 0
        #: Sequence numbers whose settled publish raised ErrorNotStored.
        self.not_stored: list[int] = []
        self.offset_mismatch: list[str] = []

    def issue(self) -> int:
        """A new sequence number (the unique id of the next publish)."""
        self.offsets.append(-1)
        self.flags.append(0)
        return len(self.offsets) - 1

    def acked(self) -> int:
        """How many messages were acked."""
        return sum(1 for o in self.offsets if o >= 0)

    def missing(self, flag: int) -> list[int]:
        """The acked messages whose flag is not set."""
        return [s for s, o in enumerate(self.offsets) if o >= 0 and not self.flags[s] & flag]


class Run:
    """Shared state of one soak run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ledgers = [Ledger() for _ in range(args.partitions)]
        self.progress: dict[str, Progress] = {}
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        self.failures: list[str] = []
        self.faults: Counter[str] = Counter()
        self.longest_fault = 0.0
        self.longest_recovery = 0.0
        self.producing = True
        #: Bytes of the ids the producers' settler remembers (a bounded set:
        #: see `remembered_ids_bytes`), measured at the end.
        self.remembered_bytes = 0
        self.gaps = 0
        #: Voluntary resubscriptions, and how far each RESUME started from the
        #: offset after the one stored when leaving (0 is right).
        self.resubscribes = 0
        self.repairs = 0
        self.resume_moves: list[int] = []
        self.restarts: Counter[str] = Counter()
        self.broker_ports: frozenset[int] = frozenset()
        #: (seconds since the start, RSS, open descriptors, connections to brokers)
        self.samples: list[tuple[float, int, int, int]] = []
        #: The sample taken when every worker had connected (before the first fault).
        self.start_sample: Optional[tuple[float, int, int, int]] = None
        self.started = time.monotonic()
        self.logged: Counter[str] = Counter()
        self.logged_exceptions: list[str] = []

    def sample(self) -> tuple[float, int, int, int]:
        """Measure RSS and descriptors now (and keep the sample)."""
        fds, to_brokers = open_fds(self.broker_ports)
        self.samples.append((time.monotonic() - self.started, rss_bytes(), fds, to_brokers))
        return self.samples[-1]

    def tracker(self, name: str) -> Progress:
        """A progress tracker for the task `name`."""
        self.progress[name] = progress = Progress(name)
        return progress

    def error(self, where: str, exc: BaseException) -> None:
        """Count an exception lbwire raised; anything but a LiftbridgeError fails the run."""
        if isinstance(exc, LiftbridgeError):
            self.errors[type(exc).__name__] += 1
            self.error_examples.setdefault(type(exc).__name__, f"{where}: {exc}")
        else:
            self.errors[f"NOT-LiftbridgeError:{type(exc).__name__}"] += 1
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.failures.append(f"{where}: {type(exc).__name__} is no LiftbridgeError\n{text}")
            log(f"FAILURE in {where}: {exc!r}")

    def record(self, msg: Message, flag: int) -> bool:
        """Note a delivered message; False when it was delivered before (or a nudge)."""
        if is_nudge(msg):
            return True
        _, partition, seq = msg.value.split(b":", 3)[:3]
        ledger = self.ledgers[int(partition)]
        index = int(seq)
        seen = bool(ledger.flags[index] & flag)
        ledger.flags[index] |= flag
        return not seen


class CountingHandler(logging.Handler):
    """Counts log records by logger and level; keeps the tracebacks logged."""

    def __init__(self, run: Run) -> None:
        super().__init__(logging.WARNING)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record."""
        self.run.logged[f"{record.levelname}:{record.name}"] += 1
        if record.exc_info and len(self.run.logged_exceptions) < 20:
            self.run.logged_exceptions.append(self.format(record))


def remembered_ids_bytes(client: LiftbridgeClient) -> int:
    """Memory of the correlation ids the client's settler remembers (0 without settling).

    `publish(settle=True)` refuses an id used lately, so it keeps the last
    REMEMBERED_IDS of them: a bounded set that grows for the first ones.
    """
    settler = getattr(client, "_settler", None)
    if settler is None:
        return 0
    ids = settler._ids  # noqa: SLF001  # the harness measures what the client keeps
    return sys.getsizeof(ids) + sum(sys.getsizeof(i) for i in ids)


def is_nudge(msg: Message) -> bool:
    """Whether `msg` is a settled producer's nudge (docs/cookbook/publishing.md), not a payload."""
    return "lbwire-nudge" in msg.headers


def payload(partition: int, seq: int, size: int) -> bytes:
    """The value of message `seq` of a partition: its id, padded to `size`."""
    head = b"soak:%d:%d:" % (partition, seq)
    return head + b"x" * max(0, size - len(head))


# ---------------------------------------------------------------------- workers


async def producer(client: LiftbridgeClient, run: Run, partition: int) -> None:
    """Publish to one partition with AckPolicy.ALL, recording each ack, until told to stop."""
    progress = run.tracker(f"producer-{partition}")
    ledger = run.ledgers[partition]
    interval = 1.0 / run.args.rate
    while run.producing:
        seq = ledger.issue()
        try:
            ack = await client.publish(
                payload(partition, seq, run.args.size),
                stream=STREAM,
                partition=partition,
                ack_policy=AckPolicy.ALL,
                settle=run.args.settle,
            )
        except Exception as exc:
            if isinstance(exc, ErrorNotStored):
                ledger.not_stored.append(seq)
            run.error(f"producer-{partition}", exc)
            await anyio.sleep(0.2)
            continue
        if ack is None:
            run.failures.append(f"producer-{partition}: publish with AckPolicy.ALL returned no ack")
            continue
        ledger.offsets[seq] = ack.offset
        progress.tick()
        await anyio.sleep(interval)


async def subscriber(client: LiftbridgeClient, run: Run, partition: int) -> None:
    """Read one partition from its cursor, storing the cursor as it goes.

    It subscribes again when its subscription raises, and also on its own
    every `--resubscribe` seconds or so (after storing its cursor), so that
    RESUME and leaving a subscription mid-stream are exercised throughout.
    """
    name = f"subscriber-{partition}"
    progress = run.tracker(name)
    ledger = run.ledgers[partition]
    cursor_id = f"soak-cursor-{partition}"
    rng = random.Random(f"{run.args.seed}-{partition}")
    stored: Optional[int] = None  # the offset last stored by a leaving subscription
    while True:
        leave_at = time.monotonic() + run.args.resubscribe * rng.uniform(0.5, 1.5)
        try:
            subscription = client.subscribe(
                STREAM,
                partition=partition,
                start_position=StartPosition.RESUME,
                cursor_id=cursor_id,
            )
            async with aclosing(subscription):
                expected: Optional[int] = None
                stored_at = time.monotonic()
                async for msg in subscription:
                    if expected is not None and msg.offset != expected:
                        run.gaps += 1
                        log(f"{name}: offset {msg.offset} after {expected - 1} in one subscription")
                    elif expected is None and stored is not None:
                        run.resume_moves.append(msg.offset - (stored + 1))
                    stored = None
                    expected = msg.offset + 1
                    if not run.record(msg, SUBSCRIBED):
                        ledger.subscriber_dups += 1
                    progress.tick()
                    leaving = time.monotonic() >= leave_at
                    if leaving or time.monotonic() - stored_at >= run.args.cursor_interval:
                        try:
                            await client.set_cursor(STREAM, partition, cursor_id, msg.offset)
                            if leaving:
                                stored = msg.offset
                        except Exception as exc:
                            run.error(f"{name} set_cursor", exc)
                        stored_at = time.monotonic()
                    if leaving:
                        break
                else:
                    run.failures.append(f"{name}: the subscription ended without an error")
            run.resubscribes += 1
            continue
        except Exception as exc:
            run.error(name, exc)
        run.restarts[name] += 1
        await anyio.sleep(0.2)


async def member(brokers: list[str], run: Run, index: int, group: Progress) -> None:
    """One consumer group member with a client of its own; joins again on errors."""
    name = f"member-{index}"
    progress = run.tracker(name)
    async with LiftbridgeClient(brokers) as client:
        while True:
            try:
                async with client.consumer(
                    GROUP, [STREAM], auto_offset=AutoOffset.EARLIEST
                ) as consumer:
                    async for msg in consumer:
                        if not run.record(msg, GROUPED):
                            run.ledgers[msg.partition].group_dups += 1
                        progress.tick()
                        group.tick()
                run.failures.append(f"{name}: the consumer ended without an error")
            except Exception as exc:
                run.error(name, exc)
            run.restarts[name] += 1
            await anyio.sleep(0.2)


# ---------------------------------------------------------------------- faults


async def healthy(cluster: LiftbridgeCluster, admin: LiftbridgeClient, run: Run) -> bool:
    """Wait until the cluster is whole again, restarting a node that stays out.

    Whole: a metadata leader replicates to every node, and every partition
    (the cursors' too) has a leader and all three replicas in sync. A node
    can stay out of the metadata Raft group after another node restarts (a
    server matter, not the client's): it is killed and started again, and
    that is counted as a repair, not as a fault.
    """
    for attempt in range(3):
        stuck = await out_of_cluster(cluster, admin, run)
        if stuck is None:
            return True
        if stuck < 0 or attempt == 2:
            break
        log(f"repair: node{stuck} stays out of the cluster; killing and starting it")
        run.repairs += 1
        began = time.monotonic()
        await cluster.nodes[stuck].akill()
        try:
            await cluster.nodes[stuck].astart()
        except LiftbridgeStartError as exc:
            log(f"node{stuck} did not start: {str(exc).splitlines()[0]}")
        # The repair is a fault too (a kill and a start).
        run.longest_fault = max(run.longest_fault, time.monotonic() - began)
    return False


async def out_of_cluster(
    cluster: LiftbridgeCluster, admin: LiftbridgeClient, run: Run
) -> Optional[int]:
    """None when the cluster is whole, else the node that is out (-1: unknown)."""
    try:
        await cluster.await_ready()
    except LiftbridgeStartError as exc:
        reason = str(exc).splitlines()[0]
        log(f"cluster not ready: {reason}")
        named = [i for i, node in enumerate(cluster.nodes) if f"{node.broker}:" in reason]
        return named[0] if named else -1
    ids = [node.server_id for node in cluster.nodes]
    out: Counter[int] = Counter()
    with anyio.move_on_after(run.args.heal_timeout):
        while True:
            try:
                metadata = await admin.get_metadata()
                partitions = [
                    p
                    for s in metadata.metadata
                    if s.name in (STREAM, CURSORS_STREAM)
                    for p in s.partitions.values()
                ]
                out = Counter(i for p in partitions for i, n in enumerate(ids) if n not in p.isr)
                if len(partitions) == run.args.partitions + 1 and all(
                    p.leader and len(p.isr) == len(ids) for p in partitions
                ):
                    return None
            except Exception as exc:
                run.error("admin get_metadata", exc)
            await anyio.sleep(0.5)
    log(f"partitions not back in sync in time (replicas out of sync by node: {dict(out)})")
    return out.most_common(1)[0][0] if out else -1


async def chaos(cluster: LiftbridgeCluster, admin: LiftbridgeClient, run: Run, end: float) -> None:
    """Inject faults, one node at a time, until the budget or the time runs out."""
    args = run.args
    rng = random.Random(args.seed)
    kinds = ["kill", "restart", "stop"]
    await anyio.sleep(min(args.first_fault, max(0.0, end - time.monotonic())))
    run.start_sample = run.sample()
    while sum(run.faults.values()) < args.max_faults:
        index = rng.randrange(len(cluster.nodes))
        kind = rng.choice(kinds)
        down = rng.uniform(1.0, args.max_down)
        pause = rng.uniform(args.min_pause, args.max_pause)
        if time.monotonic() + down + 30.0 > end:
            break
        node = cluster.nodes[index]
        began = time.monotonic()
        log(f"fault {sum(run.faults.values()) + 1}: {kind} node{index} for {down:.1f} s")
        try:
            if kind == "kill":
                await node.akill()
                await anyio.sleep(down)
                await node.astart()
            elif kind == "restart":
                await node.arestart()
            else:
                assert node.pid is not None
                os.kill(node.pid, signal.SIGSTOP)
                try:
                    await anyio.sleep(down)
                finally:
                    os.kill(node.pid, signal.SIGCONT)
        except LiftbridgeStartError as exc:
            log(f"node{index} did not start: {str(exc).splitlines()[0]}; starting it again")
            run.errors["harness:node-start"] += 1
            await node.astart()
        lasted = time.monotonic() - began
        run.faults[kind] += 1
        run.longest_fault = max(run.longest_fault, lasted)
        if not await healthy(cluster, admin, run):
            run.failures.append(f"the cluster did not heal after fault {sum(run.faults.values())}")
            return
        recovery = time.monotonic() - began
        run.longest_recovery = max(run.longest_recovery, recovery)
        log(f"  node{index} back after {lasted:.1f} s, partitions in sync after {recovery:.1f} s")
        await anyio.sleep(pause)


async def monitor(run: Run) -> None:
    """Sample RSS and descriptors; print a status line now and then."""
    last_line = time.monotonic()
    while True:
        now = time.monotonic()
        sample = run.sample()
        if now - last_line >= 30:
            last_line = now
            acked = sum(ledger.acked() for ledger in run.ledgers)
            stall = max((p.stall(now) for p in run.progress.values()), default=0.0)
            log(
                f"status: acked {acked}, faults {sum(run.faults.values())},"
                f" errors {sum(run.errors.values())}, "
                f"max stall {stall:.1f} s, rss {sample[1] >> 20} MiB,"
                f" fds {sample[2]} ({sample[3]} to brokers)"
            )
        await anyio.sleep(2.0)


# ---------------------------------------------------------------------- the run


async def wait_delivered(run: Run, flag: int, timeout: float) -> bool:
    """Wait until every acked message has the flag; False after `timeout`."""
    # Readers set no event per message; polling the ledgers is enough here.
    with anyio.move_on_after(timeout):
        while any(ledger.missing(flag) for ledger in run.ledgers):  # noqa: ASYNC110
            await anyio.sleep(0.5)
        return True
    return False


async def verify(brokers: list[str], run: Run) -> None:
    """Read every partition from its earliest offset; mark each id found."""
    async with LiftbridgeClient(brokers) as client:
        for partition, ledger in enumerate(run.ledgers):
            for attempt in range(3):
                seen: set[int] = set()
                try:
                    with anyio.fail_after(300):
                        subscription = client.subscribe(
                            STREAM,
                            partition=partition,
                            start_position=StartPosition.EARLIEST,
                            stop_position=StopPosition.STOP_LATEST,
                        )
                        async with aclosing(subscription):
                            async for msg in subscription:
                                if is_nudge(msg):
                                    continue
                                seq = int(msg.value.split(b":", 3)[2])
                                if seq in seen:
                                    ledger.stored_twice += 1
                                seen.add(seq)
                                ledger.flags[seq] |= STORED
                                if ledger.offsets[seq] >= 0 and ledger.offsets[seq] != msg.offset:
                                    ledger.offset_mismatch.append(
                                        f"p{partition} id {seq}: acked at {ledger.offsets[seq]},"
                                        f" stored at {msg.offset}"
                                    )
                    break
                except Exception as exc:
                    run.error(f"verify partition {partition} (attempt {attempt + 1})", exc)
                    ledger.stored_twice = 0
                    ledger.offset_mismatch.clear()


async def soak(args: argparse.Namespace, run: Run) -> None:
    """Start the cluster, run the workers and the faults, then check the log."""
    overrides = {**FAST_FAILOVER, **GROUP_TIMEOUTS}
    log(f"starting a 3-node Liftbridge {args.server} cluster")
    async with LiftbridgeCluster(
        size=3, version=args.server, config_overrides=overrides
    ) as cluster:
        if args.keep_logs:
            cluster.keep_logs()
        log(f"cluster {cluster.brokers}, logs in {[str(n.workdir) for n in cluster.nodes]}")
        brokers = cluster.brokers
        run.broker_ports = frozenset(node.port for node in cluster.nodes)
        async with LiftbridgeClient(brokers) as admin, LiftbridgeClient(brokers) as client:
            await admin.create_stream(
                STREAM,
                partitions=args.partitions,
                replication_factor=3,
                wait_for_stream=True,
                optimistic_concurrency_control=args.settle or None,
            )
            await admin.wait_for_cursors()
            if not await healthy(cluster, admin, run):
                raise RuntimeError("the new cluster's partitions never got in sync")
            run.started = time.monotonic()
            end = run.started + args.minutes * 60
            group = run.tracker("group")
            async with anyio.create_task_group() as workers:
                workers.start_soon(monitor, run)
                for partition in range(args.partitions):
                    workers.start_soon(producer, client, run, partition)
                    workers.start_soon(subscriber, client, run, partition)
                for index in range(args.members):
                    workers.start_soon(member, brokers, run, index, group)
                await chaos(cluster, admin, run, end)
                await anyio.sleep(max(0.0, end - time.monotonic()))
                log("time is up: producers stop; waiting for the cluster and the readers")
                run.producing = False
                await anyio.sleep(1.0)
                for progress in run.progress.values():
                    progress.freeze()
                healed = await healthy(cluster, admin, run)
                if not healed:
                    run.failures.append("the cluster was not healthy at the end")
                for flag, who in ((SUBSCRIBED, "the subscribers"), (GROUPED, "the consumer group")):
                    if not await wait_delivered(run, flag, args.catch_up):
                        missing = sum(len(ledger.missing(flag)) for ledger in run.ledgers)
                        run.failures.append(
                            f"{who} had not delivered {missing} acked messages"
                            f" {args.catch_up:.0f} s after the producers stopped"
                        )
                run.sample()
                run.remembered_bytes = remembered_ids_bytes(client)
                workers.cancel_scope.cancel()
            log("workers ended; reading every partition from its earliest offset")
            await verify(brokers, run)


def summary(run: Run, args: argparse.Namespace, seconds: float) -> bool:
    """Print the summary lines; return whether the run passed."""
    acked = sum(ledger.acked() for ledger in run.ledgers)
    lost = [(p, s) for p, ledger in enumerate(run.ledgers) for s in ledger.missing(STORED)]
    unacked_stored = sum(
        1
        for ledger in run.ledgers
        for s, o in enumerate(ledger.offsets)
        if o < 0 and ledger.flags[s] & STORED
    )
    delivered_sub = sum(sum(1 for f in ledger.flags if f & SUBSCRIBED) for ledger in run.ledgers)
    delivered_group = sum(sum(1 for f in ledger.flags if f & GROUPED) for ledger in run.ledgers)
    now = time.monotonic()
    stalls = {
        name: p.stall(now)
        for name, p in run.progress.items()
        if name.startswith(("producer", "subscriber")) or name == "group"
    }
    hang_limit = run.longest_fault + HANG_MARGIN
    hangs = {name: s for name, s in stalls.items() if s > hang_limit}
    worst = max(stalls, key=lambda name: stalls[name]) if stalls else "-"
    baseline_at = min(WARMUP, seconds / 2)
    baseline = next((s for s in run.samples if s[0] >= baseline_at), run.samples[0])
    first, last = run.start_sample or run.samples[0], run.samples[-1]
    # Less the settler's memory of recent correlation ids: it grows until its
    # bound (lbwire._settle.REMEMBERED_IDS ids) by design, not a leak.
    rss_growth = (last[1] - baseline[1] - run.remembered_bytes) / baseline[1]
    fd_delta = last[2] - first[2]
    # Connections come and go with the partitions' leaders: each client keeps
    # at most one connection per broker for calls and a pool for subscriptions.
    # What must stay flat is every other descriptor, and the connections must
    # stay within that bound.
    other_delta = (last[2] - last[3]) - (first[2] - first[3])
    connection_bound = (2 + args.members) * 3 * (1 + MAX_CONNS_PER_BROKER)
    bad_errors = [k for k in run.errors if k.startswith("NOT-")]
    mismatches = [m for ledger in run.ledgers for m in ledger.offset_mismatch]
    stored_twice = sum(ledger.stored_twice for ledger in run.ledgers)
    not_stored = sum(len(ledger.not_stored) for ledger in run.ledgers)
    not_stored_found = sum(
        1 for ledger in run.ledgers for s in ledger.not_stored if ledger.flags[s] & STORED
    )
    print()
    print(
        f"chaos soak: backend {args.backend}, server {args.server}, seed {args.seed},"
        f" {seconds / 60:.1f} min, {args.partitions} partitions, {args.members} group members"
    )
    print(
        f"faults: {dict(run.faults)} (total {sum(run.faults.values())}), longest fault"
        f" {run.longest_fault:.1f} s, longest recovery {run.longest_recovery:.1f} s,"
        f" repairs (a node restarted to rejoin) {run.repairs}"
    )
    print(
        f"acked: {acked}; lost: {len(lost)}; stored without ack: {unacked_stored};"
        f" stored twice: {stored_twice}; ack offset mismatches: {len(mismatches)}"
    )
    if args.settle:
        print(
            f"settled: raised but stored: {unacked_stored}; ErrorNotStored: {not_stored}"
            f" (of which stored: {not_stored_found})"
        )
    print(
        f"delivered to subscribers: {delivered_sub} (duplicates"
        f" {sum(ledger.subscriber_dups for ledger in run.ledgers)}, gaps {run.gaps});"
        f" to the group: {delivered_group} (duplicates"
        f" {sum(ledger.group_dups for ledger in run.ledgers)})"
    )
    print(f"errors: {dict(run.errors.most_common())}")
    for text in run.error_examples.values():
        print(f"  first {text.splitlines()[0][:300]}")
    moves = run.resume_moves
    back = [m for m in moves if m < 0]
    skips = [m for m in moves if m > 0]
    print(
        f"restarts after errors: {dict(run.restarts)}; voluntary resubscribes {run.resubscribes}:"
        f" {moves.count(0)} resumed at the stored cursor, {len(back)} before it"
        f" (by {sorted(back)[:5]}), {len(skips)} after it"
    )
    print(
        f"max stall: {stalls.get(worst, 0.0):.1f} s ({worst}); hang limit {hang_limit:.1f} s;"
        f" hangs: {len(hangs)}"
    )
    print(
        f"rss: start {first[1] >> 20} MiB, at {baseline[0]:.0f} s {baseline[1] >> 20} MiB,"
        f" end {last[1] >> 20} MiB, less {run.remembered_bytes >> 20} MiB of remembered settled ids"
        f" ({rss_growth:+.1%}); fds: start {first[2]} ({first[3]} to"
        f" brokers), end {last[2]} ({last[3]} to brokers), {fd_delta:+d}, others {other_delta:+d}"
    )
    print(f"log records: {dict(run.logged.most_common())}")
    for text in run.logged_exceptions:
        print(f"logged exception:\n{text}")
    failures = list(run.failures)
    if lost:
        failures.append(f"{len(lost)} acked messages lost, e.g. {lost[:10]}")
    if hangs:
        failures.append(f"hangs: {hangs}")
    if bad_errors:
        failures.append(f"exceptions that are no LiftbridgeError: {bad_errors}")
    if rss_growth >= RSS_GROWTH_LIMIT:
        failures.append(f"RSS grew by {rss_growth:.1%} after {baseline[0]:.0f} s")
    if abs(other_delta) > FD_SLACK:
        failures.append(
            f"descriptors other than broker connections went from {first[2] - first[3]}"
            f" to {last[2] - last[3]}"
        )
    if last[3] > connection_bound:
        failures.append(f"{last[3]} connections to brokers, more than {connection_bound}")
    if stored_twice:
        failures.append(f"{stored_twice} messages stored twice")
    if args.settle and unacked_stored:
        failures.append(f"{unacked_stored} settled publishes raised but were stored")
    if mismatches:
        failures.append(f"acks naming the wrong offset: {mismatches[:10]}")
    if skips:
        failures.append(f"RESUME skipped messages after the stored cursor: {skips[:10]}")
    if acked == 0:
        failures.append("nothing was acked")
    for failure in failures:
        print(f"FAILURE: {failure}")
    print("PASS" if not failures else "FAIL")
    return not failures


def watchdog(seconds: float) -> None:
    """End the process (and its servers) if the run overstays by far: a hang of the harness."""

    def fire() -> None:
        print(f"WATCHDOG: the run did not end within {seconds:.0f} s; threads:", flush=True)
        faulthandler.dump_traceback(all_threads=True)
        for process in list(live_processes):
            try:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            except OSError:
                pass
        print("FAIL", flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main() -> int:
    """Parse the options, run the soak, print the summary; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--server", choices=["v1.9.0", "newest"], default="v1.9.0")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=None, help="fault schedule (random if unset)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--members", type=int, default=3, help="consumer group members")
    parser.add_argument("--rate", type=float, default=20.0, help="publishes/s per producer")
    parser.add_argument("--size", type=int, default=64, help="bytes per message")
    parser.add_argument("--max-faults", type=int, default=None, help="default: 3 per minute")
    parser.add_argument("--max-down", type=float, default=12.0, help="longest kill/freeze, s")
    parser.add_argument("--min-pause", type=float, default=5.0, help="between faults, s")
    parser.add_argument("--max-pause", type=float, default=20.0, help="between faults, s")
    parser.add_argument("--first-fault", type=float, default=20.0, help="s after the start")
    parser.add_argument("--cursor-interval", type=float, default=0.5, help="s between set_cursor")
    parser.add_argument("--resubscribe", type=float, default=60.0, help="s between leaving")
    parser.add_argument(
        "--heal-timeout", type=float, default=60.0, help="s for replicas to get back in sync"
    )
    parser.add_argument("--catch-up", type=float, default=120.0, help="s for readers at the end")
    parser.add_argument(
        "--settle",
        action="store_true",
        help="producers publish with settle=True (the stream gets concurrency control)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    if args.max_faults is None:
        args.max_faults = max(1, int(args.minutes * 3))
    # Server processes the harness starts (and lbwire.testing.find_liftbridge)
    # see the generation asked for.
    os.environ["LBWIRE_SERVER"] = args.server
    log(
        f"chaos soak: seed {args.seed}, backend {args.backend}, server {args.server},"
        f" {args.minutes} min, pid {os.getpid()}, load {os.getloadavg()}"
    )
    fixed = fix_mmap_threshold()
    log(f"glibc mmap threshold fixed at 128 KiB: {fixed}")
    run = Run(args)
    logging.getLogger().addHandler(CountingHandler(run))
    logging.getLogger().setLevel(logging.WARNING)
    watchdog(args.minutes * 60 + args.catch_up * 2 + args.heal_timeout * 2 + 900)
    began = time.monotonic()
    try:
        anyio.run(soak, args, run, backend=args.backend)
    except BaseException:
        traceback.print_exc()
        print("FAIL (the harness broke)")
        return 2
    passed = summary(run, args, time.monotonic() - began)
    log(f"load {os.getloadavg()}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
