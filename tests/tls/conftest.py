"""Fixtures of the TLS tests: one set of trustme certificates per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tls_support import PKI, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """CAs, server and client certificates, and the server's PEM files."""
    return make_pki(tmp_path_factory.mktemp("pki"))
