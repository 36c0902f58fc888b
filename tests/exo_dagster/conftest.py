"""Shared fixtures: a registry with the built-ins plus stand-ins for satellites the seed names
but this catalog does not ship yet (their configs are all the parser and compiler look at)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exo_dagster.registry import Registry, SatelliteConfig, builtin_registry, satellite

FIXTURES = Path(__file__).parent / "fixtures"


class LlmConfig(SatelliteConfig):
    model: str
    output_format: str = "text"
    output_schema: dict[str, Any] | None = None
    temperature: float = 0.0


class TextConfig(SatelliteConfig):
    url: str | None = None
    text: str | None = None


def _seed_registry() -> Registry:
    extra = Registry()
    satellite("satellite/exospherehost/llm-complete", config=LlmConfig, registry=extra,
              aliases=["satellite/exospherehost/deepseek-r1-distrill-llama-70b"], resources={"cpu": 1})(lambda ctx, c: [])
    satellite("satellite/exospherehost/forward-logs", config=TextConfig, registry=extra)(lambda ctx, c: [])
    satellite("satellite/exospherehost/send-alert", config=TextConfig, registry=extra)(lambda ctx, c: [])
    satellite("satellite/exospherehost/embed-text", config=TextConfig, registry=extra, resources={"gpu": 1},
              kinds=("torch",))(lambda ctx, c: [])
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
