"""Shared fixtures: the built-in registry the seed-format spec loads against, and a cluster-file writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from exo_dagster.catalog.registry import Registry, builtin_registry

FIXTURES = Path(__file__).parent / "fixtures"


def _seed_registry() -> Registry:
    return builtin_registry()


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
