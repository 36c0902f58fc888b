"""tests/services.py: an absent service skips the test that needs it, and fails it under EXO_REQUIRE_SERVICES=1 (CI);
a present one hands back its address. Probed with real sockets: a port nothing listens on, and one that listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[1]
NETWORK = {
    "postgres": (services.POSTGRES, services.postgres_url, "postgresql://postgres@127.0.0.1:{port}/postgres"),
    "redis": (services.REDIS, services.redis_url, "redis://127.0.0.1:{port}"),
}


@pytest.mark.parametrize("name", NETWORK)
def test_an_unreachable_service_skips_or_fails_under_require(name, monkeypatch):
    service, probe, url = NETWORK[name]
    port = free_port()  # bound and released: nothing listens there
    monkeypatch.setenv(service.variable, url.format(port=port))
    monkeypatch.delenv(services.REQUIRE_SERVICES, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"needs {service.name} at 127.0.0.1:{port}"):
        probe()
    monkeypatch.setenv(services.REQUIRE_SERVICES, "1")
    with pytest.raises(
        pytest.fail.Exception, match=f"needs {service.name} at 127.0.0.1:{port}.*EXO_REQUIRE_SERVICES=1"
    ):
        probe()


@pytest.mark.parametrize("name", NETWORK)
def test_a_listening_service_gives_its_url(name, monkeypatch):
    service, probe, url = NETWORK[name]
    with socket.create_server(("127.0.0.1", 0)) as server:
        configured = url.format(port=server.getsockname()[1])
        monkeypatch.setenv(service.variable, configured)
        monkeypatch.setenv(services.REQUIRE_SERVICES, "1")
        assert probe() == configured


def test_redis_url_names_the_database(monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setenv(services.REDIS.variable, f"redis://127.0.0.1:{server.getsockname()[1]}/")
        assert services.redis_url(13).endswith(f":{server.getsockname()[1]}/13")


def test_a_missing_chromium_skips_or_fails_under_require(monkeypatch, tmp_path):
    not_a_program = tmp_path / "chromium"
    not_a_program.write_text("")  # exists, not executable
    monkeypatch.setenv("EXO_TEST_CHROMIUM", str(not_a_program))
    monkeypatch.delenv(services.REQUIRE_SERVICES, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs Debian's `chromium`"):
        services.chromium_path()
    monkeypatch.setenv(services.REQUIRE_SERVICES, "1")
    with pytest.raises(pytest.fail.Exception, match="needs Debian's `chromium`"):
        services.chromium_path()
    not_a_program.chmod(0o755)
    assert services.chromium_path() == str(not_a_program)


@pytest.mark.slow
def test_a_postgres_test_skips_without_postgres_and_fails_in_ci():
    """End to end: one of the row-cache tests, run by pytest with EXO_TEST_POSTGRES_URL at a closed port."""
    env = {k: v for k, v in os.environ.items() if k != services.REQUIRE_SERVICES}
    env[services.POSTGRES.variable] = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    [row_cache_tests] = REPO.glob("tests/**/test_row_cache_pg.py")
    command = [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs"),
        f"{row_cache_tests}::test_two_connections_share_rows_per_cluster_and_step",
    ]
    skipped = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout[-3000:] + skipped.stderr[-3000:]
    assert "needs PostgreSQL at 127.0.0.1:" in skipped.stdout
    failed = subprocess.run(
        command, cwd=REPO, env={**env, services.REQUIRE_SERVICES: "1"}, capture_output=True, text=True, timeout=300
    )
    assert failed.returncode == 1 and "1 failed" in failed.stdout, failed.stdout[-3000:] + failed.stderr[-3000:]
    assert "needs PostgreSQL at 127.0.0.1:" in failed.stdout
