"""Fixtures for the failover tests: real three-node Liftbridge clusters.

``shared_cluster`` is one cluster per test module, for tests that kill no
node. Tests that kill nodes get ``fresh_cluster``, a cluster of their own: a
new cluster starts in about 1.3 s, restarting a killed node takes about 3 s,
and a restarted node stays missing from the broker list of every broker that
answered FetchMetadata while it was down (v1.9.0 caches that partial list for
``metadata.cache.max.age``, 2 minutes), which would leak into later tests.

Both run with failure detection tuned down from v1.9.0's defaults (a follower
reports a silent partition leader after 15 s, ``replica.max.leader.timeout``),
so that a partition fails over in a few seconds; see ``FAST_FAILOVER``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lbwire.testing import LiftbridgeCluster

#: Server settings for quick failure detection (v1.9.0 defaults: 10 s, 3 s,
#: 15 s, 15 s). Followers of a caught-up partition ask their leader for data
#: every `replica.max.idle.wait` minus up to 2 s of jitter, each request
#: failing after `replica.fetch.timeout`. After `replica.max.leader.timeout`
#: without an answer they report the leader; two reports of a three-replica
#: partition elect a new one. The dead leader stays in the ISR until the new
#: leader's `replica.max.lag.time` runs out, and until then nothing new is
#: committed, so readers wait for it too.
#:
#: The leader timeout must stay well above idle wait + fetch timeout: a
#: follower's first requests to a new leader can fail for a round (epoch
#: mismatch while Raft applies the change), and v1.9.0 never forgets the
#: witnesses of a partition's failover, so one spurious report moves the
#: leadership again at once, possibly to the dead broker still in the ISR. A
#: follower that could not ask the new leader where to truncate cuts its log
#: to its own high watermark, which trails; made leader by such a second
#: failover, it loses acked messages (seen with a 2 s leader timeout).
FAST_FAILOVER = {
    "clustering.replica.max.idle.wait": "1500ms",
    "clustering.replica.fetch.timeout": "1s",
    "clustering.replica.max.leader.timeout": "4s",
    "clustering.replica.max.lag.time": "3s",
}


def new_cluster() -> LiftbridgeCluster:
    """A three-node cluster with ``FAST_FAILOVER``, cursors on (not started)."""
    # cursors.stream.replication.factor defaults to -1 in v1.9.0: every member
    # of the Raft configuration replicates the cursors stream, here all three.
    return LiftbridgeCluster(size=3, config_overrides=FAST_FAILOVER)


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[LiftbridgeCluster]:
    """One cluster for the module's tests that kill nothing."""
    with new_cluster() as cluster:
        yield cluster


@pytest.fixture
def fresh_cluster() -> Iterator[LiftbridgeCluster]:
    """A cluster of the test's own, for tests that kill nodes."""
    with new_cluster() as cluster:
        yield cluster
