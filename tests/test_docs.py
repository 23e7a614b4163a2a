"""The documentation site builds, and the programs its pages include run.

The site build (`mkdocs build --strict`: a broken link, anchor, snippet include
or API reference fails it) needs the `docs` extra; without it the test skips,
except under CI, which installs it. The snippets in docs/snippets/ run as
separate processes against the real server, as a reader would run them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lbwire.testing import LiftbridgeServer, TLSFiles

ROOT = Path(__file__).resolve().parent.parent
SNIPPETS = ROOT / "docs" / "snippets"
#: A guard against hangs, never a speed expectation.
HANG_GUARD = 300.0


def nav_pages(nav: Any) -> Iterator[str]:
    """Every Markdown file named in mkdocs.yml's nav."""
    if isinstance(nav, str):
        if nav.endswith(".md"):
            yield nav
    elif isinstance(nav, list):
        for item in nav:
            yield from nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from nav_pages(value)


def built_page(site: Path, page: str) -> Path:
    """Where mkdocs (with directory URLs) writes the HTML of a nav page."""
    stem = page[: -len(".md")]
    if stem == "index" or stem.endswith("/index"):
        return site / (stem + ".html")
    return site / stem / "index.html"


#: Runs a program's `main` on the backend named by its second argument.
ON_BACKEND = (
    "import runpy, sys, anyio; anyio.run(runpy.run_path(sys.argv[1])['main'], backend=sys.argv[2])"
)


def run_program(
    path: Path, env: dict[str, str], backend: str = "asyncio"
) -> subprocess.CompletedProcess[str]:
    """Run a program as a reader would (on trio: its `main` under trio.run)."""
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(path)]
    if backend != "asyncio":
        command = [sys.executable, "-c", ON_BACKEND, str(path), backend]
    result = subprocess.run(
        command,
        env={**os.environ, **env, "PYTHONPATH": python_path},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 0, f"{path.name} failed:\n{result.stdout}\n{result.stderr}"
    return result


# -- the site ---------------------------------------------------------------------------


@pytest.mark.slow
def test_site_builds_strict_with_every_nav_page(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install the docs extra: pip install -e '.[docs]'")
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    import yaml

    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build failed:\n{result.stdout}\n{result.stderr}"

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = list(nav_pages(config["nav"]))
    assert len(pages) >= 15
    missing = [page for page in pages if not built_page(site, page).is_file()]
    assert not missing, f"nav pages not built: {missing}"
    # The API reference was generated, the examples included, the chart copied.
    client_page = built_page(site, "reference/client.md").read_text()
    assert 'id="lbwire.client.LiftbridgeClient.subscribe"' in client_page
    recipe = built_page(site, "cookbook/cursor-subscriber.md").read_text()
    assert "cursor subscriber on trio" in recipe  # the included example's docstring
    assert (site / "img" / "benchmarks.png").stat().st_size > 0
    assert "<!-- benchmarks:" not in built_page(site, "performance.md").read_text()


# -- the programs the pages include ----------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("program", "expected"),
    [
        ("first_program.py", "1: b'liftbridge'"),
        ("consumer_group.py", "member b: partition"),
        ("pipelined_publish.py", "bulk done, last offset 1099"),
        ("batch_publish.py", "refusals nobody awaited: 1"),
        ("stream_reader.py", "lag: {0: 0, 1: 0, 2: 0, 3: 0}"),
        ("serializers.py", "1: skipped b'not json'\n2: order-2 -> coffee"),
        ("table.py", "mode = fast (revision 1)\ncounter: 20, keys: ['hits']"),
    ],
)
def test_snippet_runs(
    program: str,
    expected: str,
    backend: str,
    liftbridge_server: LiftbridgeServer,
    stream_name: str,
) -> None:
    pytest.importorskip(backend)
    result = run_program(
        SNIPPETS / program,
        {"LIFTBRIDGE_BROKERS": liftbridge_server.broker, "LIFTBRIDGE_STREAM": stream_name},
        backend,
    )
    assert expected in result.stdout


def test_cursor_subscriber_examples_are_the_ones_the_cookbook_includes() -> None:
    recipe = (ROOT / "docs" / "cookbook" / "cursor-subscriber.md").read_text()
    for example in ("examples/cursor_subscriber.py", "examples/cursor_subscriber_trio.py"):
        assert f'--8<-- "{example}"' in recipe
        assert (ROOT / example).is_file()


@pytest.fixture(scope="module")
def mtls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("docs-tls")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("liftbridge.test", "127.0.0.1")
    client = client_ca.issue_cert("app.test", common_name="app")
    files = {
        name: directory / f"{name}.pem"
        for name in ("server", "server-key", "client-ca", "ca", "client")
    }
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server-key"]))
    client_ca.cert_pem.write_to_path(str(files["client-ca"]))
    server_ca.cert_pem.write_to_path(str(files["ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


@pytest.mark.server
def test_tls_snippet_connects_with_a_client_certificate_and_is_refused_without(
    mtls_files: dict[str, Path],
) -> None:
    tls = TLSFiles(
        mtls_files["server"], mtls_files["server-key"], client_ca=mtls_files["client-ca"]
    )
    with LiftbridgeServer(tls=tls) as server:
        env = {"LIFTBRIDGE_BROKERS": server.broker, "LIFTBRIDGE_CA": str(mtls_files["ca"])}
        with_cert = run_program(
            SNIPPETS / "tls_client.py",
            {
                **env,
                "LIFTBRIDGE_CERT": str(mtls_files["client"]),
                "LIFTBRIDGE_KEY": str(mtls_files["client"]),
            },
        )
        assert "(TLS)" in with_cert.stdout
        without = subprocess.run(
            [sys.executable, str(SNIPPETS / "tls_client.py")],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
        assert without.returncode == 1
        assert "requires a client certificate" in without.stdout


@pytest.mark.slow
@pytest.mark.server
def test_cluster_snippet_survives_a_leader_kill() -> None:
    result = run_program(SNIPPETS / "cluster.py", {})
    assert "after the failover: 2: b'kept 2'" in result.stdout
