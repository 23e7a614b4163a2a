"""Fixtures for the failover tests: real three-node Liftbridge clusters.

``shared_cluster`` is one cluster per test module, for tests that kill no
node. Tests that kill nodes get ``fresh_cluster``, a cluster of their own: a
new cluster starts faster than a killed node restarts, and a restarted node
stays missing from the broker list of every broker that answered
FetchMetadata while it was down (v1.9.0 caches that partial list for
``metadata.cache.max.age``, 2 minutes), which would leak into later tests.

Both are listed in ``helpers.servers.SERVER_FIXTURES``, so tests using them
are marked ``server``; the clusters are of the generation ``LBWIRE_SERVER``
selects, like every server of the suite.

Both run with failure detection tuned down from v1.9.0's defaults (a follower
reports a silent partition leader after 15 s, ``replica.max.leader.timeout``),
so that a partition fails over in a few seconds; see ``FAST_FAILOVER``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_support import FAST_FAILOVER

from lbwire.testing import LiftbridgeCluster


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
