"""Shared fixtures: a registry with the built-ins plus stand-ins for satellites the seed names
but this catalog does not ship yet (their configs are all the parser and compiler look at)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exo_dagster.registry import Registry, SatelliteConfig, builtin_registry, satellite

FIXTURES = Path(__file__).parent / "fixtures"


class TextConfig(SatelliteConfig):
    url: str | None = None
    text: str | None = None


def _seed_registry() -> Registry:
    extra = Registry()
    satellite("satellite/exospherehost/forward-logs", config=TextConfig, registry=extra)(lambda ctx, c: [])
    satellite("satellite/exospherehost/send-alert", config=TextConfig, registry=extra)(lambda ctx, c: [])
    return builtin_registry().merged(extra)


@pytest.fixture(scope="session")
def seed_registry() -> Registry:
    return _seed_registry()


@pytest.fixture
def write_cluster(tmp_path):
    """Write YAML text to a file and return its path (errors name this file)."""

    def write(text: str, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
