"""The outside services some tests need (PostgreSQL, Redis, Chromium), probed at the test that needs them.

An absent service skips that test with the reason, so a laptop without PostgreSQL still runs everything else;
with EXO_REQUIRE_SERVICES=1 (set by .ci/run) the same reason fails the test instead, so CI never skips silently.
Each address can be pointed elsewhere with its EXO_TEST_*_URL variable.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

REQUIRE_SERVICES = "EXO_REQUIRE_SERVICES"
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Service:
    """A network service: its name, the variable that overrides its address, the default address, how to get it."""

    name: str
    variable: str
    default: str
    install: str

    @property
    def url(self) -> str:
        """The configured address (not probed)."""
        return os.environ.get(self.variable) or self.default

    def require(self) -> str:
        """The address, after a TCP connect to it succeeds; otherwise skip (or fail, under EXO_REQUIRE_SERVICES=1)."""
        url = self.url
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port
        assert port is not None, f"{self.variable}={url!r} names no port"
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as exc:
            missing(f"this test needs {self.name} at {host}:{port} ({self.install}; or set {self.variable}): {exc}")
        return url


POSTGRES = Service(
    "PostgreSQL", "EXO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres", "CI starts it"
)
REDIS = Service("Redis", "EXO_TEST_REDIS_URL", "redis://127.0.0.1:6379", "CI starts it")


def missing(reason: str) -> NoReturn:
    """Skip the running test for `reason`, or fail it when EXO_REQUIRE_SERVICES=1."""
    if os.environ.get(REQUIRE_SERVICES) == "1":
        pytest.fail(f"{reason} [{REQUIRE_SERVICES}=1]", pytrace=False)
    pytest.skip(reason)


def postgres_url() -> str:
    """A reachable PostgreSQL server's URL (trust authentication for its user, as CI's cluster has)."""
    return POSTGRES.require()


def redis_url(db: int | None = None) -> str:
    """A reachable Redis server's URL, with database `db` when given (each test module keeps to its own numbers)."""
    url = REDIS.require().rstrip("/")
    return url if db is None else f"{url}/{db}"


def chromium_path() -> str:
    """Debian's chromium (Playwright drives it through executable_path: no browser download)."""
    found = os.environ.get("EXO_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not os.access(found, os.X_OK):
        missing("this test needs Debian's `chromium` (apt-get install -y chromium; .ci/run installs it)")
    return found
