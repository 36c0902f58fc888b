"""The satellite reference comes from the code: every Config field says what it does, docs/satellites.md
and the README's satellite table are what the generator writes today, and `exo satellites` (the list,
`--config ID`, `--markdown`) runs as users run it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from exo_dagster.catalog import reference
from exo_dagster.catalog.discovery import GROUP
from exo_dagster.catalog.registry import Registry, default_registry
from exo_dagster.sdk.satellite import SatelliteConfig, satellite

REPO = Path(__file__).resolve().parents[3]
READ_TABLE = "satellite/exospherehost/read-table"


def exo(*args: str) -> subprocess.CompletedProcess:
    """`exo ...` from this checkout (`python -m` from the repository root, so its code is what runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXO_")}
    env["COLUMNS"] = "100"
    return subprocess.run(
        [sys.executable, "-m", "exo_dagster.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def catalogued():
    """The satellites the installed distributions catalogue (entry points), not those tests declare."""
    modules = {ep.value.split(":", 1)[0] for ep in entry_points(group=GROUP)}
    defs = [
        d
        for d in reference.definitions(default_registry())
        if any(d.fn.__module__ == m or d.fn.__module__.startswith(m + ".") for m in modules)
    ]
    assert any(d.id == READ_TABLE for d in defs), [d.id for d in defs]
    return defs


def words(text: str) -> str:
    return " ".join(text.split())


def test_every_config_field_of_every_catalogued_satellite_has_a_description():
    missing = []
    for definition in catalogued():
        for model in (definition.config_model, *reference.nested_models(definition.config_model)):
            missing += [
                f"{definition.id}: `{f.key}` ({model.__module__}.{model.__name__}.{f.name})"
                for f in reference.fields(model)
                if not f.description.strip()
            ]
    assert not missing, "Config fields without Field(description=...):\n  " + "\n  ".join(missing)


@pytest.mark.slow
def test_docs_satellites_md_is_the_generated_reference():
    result = exo("satellites", "--markdown")
    assert result.returncode == 0, result.stderr
    current = (REPO / reference.DOCS_PATH).read_text(encoding="utf-8")
    assert result.stdout == current, (
        f"{reference.DOCS_PATH} is out of date with the satellites' code; regenerate it from the repository root: "
        f"`{reference.REGENERATE}` (or `python -m exo_dagster.cli satellites --markdown > {reference.DOCS_PATH}`)"
    )
    assert reference.REGENERATE in current.splitlines()[0]


@pytest.mark.slow
def test_readme_satellite_table_is_the_generated_summary():
    result = subprocess.run(
        [sys.executable, "-m", "exo_dagster.catalog.reference", "--summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    in_readme = reference.readme_summary((REPO / "README.md").read_text(encoding="utf-8"))
    assert in_readme is not None, "README.md lost its satellite-summary markers"
    assert in_readme == result.stdout, (
        f"README.md's satellite table is out of date; regenerate it: `{reference.REGENERATE_README}`"
    )


def test_config_of_read_table_prints_each_fields_key_and_description():
    result = exo("satellites", "--config", READ_TABLE)
    assert result.returncode == 0, result.stderr
    out = words(result.stdout)
    definition = default_registry().get(READ_TABLE)
    lines = result.stdout.splitlines()
    for f in reference.fields(definition.config_model):
        assert any(line.split()[:1] == [f.key] for line in lines), f"no row for `{f.key}`:\n{result.stdout}"
        assert words(f.description) in out, f"`{f.key}`'s description is missing:\n{result.stdout}"
    assert "union-by-name" in out and "source-column" in out  # the fields the old README table missed


@pytest.mark.slow
def test_config_of_an_unknown_satellite_exits_1_with_a_suggestion():
    result = exo("satellites", "--config", "satellite/exospherehost/read-tabel")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "unknown satellite `satellite/exospherehost/read-tabel`" in result.stderr
    assert f"did you mean `{READ_TABLE}`" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_satellites_lists_every_id_with_its_version_and_summary():
    result = exo("satellites")
    assert result.returncode == 0, result.stderr
    listed = {line.split("@", 1)[0]: line for line in result.stdout.splitlines() if line.strip()}
    for definition in catalogued():
        for uses in (definition.id, *definition.aliases):
            assert uses in listed, f"`{uses}` is not listed:\n{result.stdout}"
            assert f"{uses}@{definition.version}" in listed[uses]
        assert reference.summary(definition) in listed[definition.id]


# -- the generator on a catalog of its own -------------------------------------------------------
class Limits(BaseModel):
    """How much one call may use."""

    rows: int = Field(10, description="Rows per call.")


class DemoConfig(SatelliteConfig):
    mode: Literal["fast", "safe"] = Field("safe", description="How to run.")
    level: Literal["low", "high"] | None = Field(None, description="A level.")
    names: list[str] = Field(default_factory=list, description="Some names.")
    labels: dict[str, str] = Field(default_factory=dict, description="Some labels.")
    limits: Limits | None = Field(None, description="Limits, when wanted.")
    from_: str = Field(description="Who it is from.")
    separator: str = Field(",", description="A separator | with a pipe.")


@pytest.fixture
def demo_registry() -> Registry:
    registry = Registry()

    @satellite(
        "satellite/acme/demo",
        config=DemoConfig,
        version="2.1.0",
        aliases=["satellite/acme/old-demo"],
        resources={"gpu": 1},
        outputs={"x": "an output"},
        registry=registry,
    )
    def demo(ctx, config):
        """Does the demo. Then more.

        A second paragraph that the reference leaves out."""

    return registry


def test_types_defaults_and_keys_are_readable(demo_registry):
    by_key = {f.key: f for f in reference.fields(DemoConfig)}
    assert by_key["mode"].type == "one of: fast, safe" and by_key["mode"].default == "safe"
    assert by_key["level"].type == "one of: low, high, null" and by_key["level"].default == "null"
    assert by_key["names"].type == "list of string" and by_key["names"].default == "[]"
    assert by_key["labels"].type == "mapping of string to string"
    assert by_key["limits"].type == "Limits or null" and by_key["limits"].type_md == "[Limits](#limits) or null"
    assert by_key["from"].required and by_key["from"].default == "required"
    assert by_key["separator"].default == '","'
    assert reference.nested_models(DemoConfig) == [Limits]


def test_markdown_of_a_catalog(demo_registry):
    text = reference.markdown(demo_registry)
    assert text == reference.markdown(demo_registry)
    assert text.startswith("<!-- Generated") and reference.REGENERATE in text.splitlines()[0]
    assert "## satellite/acme/demo" in text and "## satellite/acme/old-demo" not in text
    assert "- version: `2.1.0`" in text and "- aliases: `satellite/acme/old-demo`" in text
    assert "- resources: `gpu: 1`" in text
    assert "Does the demo. Then more." in text and "second paragraph" not in text
    assert "| `limits` | [Limits](#limits) or null | `null` | Limits, when wanted. |" in text
    assert "| `from` | string | required | Who it is from. |" in text
    assert "A separator \\| with a pipe." in text
    assert '<a id="limits"></a>' in text and "| `rows` | int | `10` | Rows per call. |" in text
    assert reference.summary(demo_registry.get("satellite/acme/demo")) == "Does the demo."


def test_config_table_of_a_satellite(demo_registry):
    table = reference.config_table(demo_registry.get("satellite/acme/old-demo"), width=60)
    assert table.splitlines()[0].startswith("satellite/acme/demo@2.1.0")
    assert words("Who it is from.") in words(table)
    header = next(line for line in table.splitlines() if line.startswith("KEY"))
    column = header.index("DESCRIPTION")
    assert all(len(line) <= column + 40 for line in table.splitlines()[table.splitlines().index(header) :])


def test_satellites_names_where_each_satellite_comes_from(monkeypatch, demo_registry):
    from click.testing import CliRunner

    from exo_dagster import cli
    from exo_dagster.catalog import registry as registry_module

    monkeypatch.setattr(registry_module, "default_registry", lambda: demo_registry)
    plain = CliRunner().invoke(cli.main, ["satellites"])
    assert plain.exit_code == 0
    [line] = [x for x in plain.output.splitlines() if x.startswith("satellite/acme/demo@2.1.0")]
    assert "module tests" in line and line.endswith(
        "Does the demo."
    )  # declared in this test module, not a distribution
    monkeypatch.setattr(Registry, "source", lambda self, satellite_id: "acme-satellites", raising=False)
    named = CliRunner().invoke(cli.main, ["satellites"])
    assert named.exit_code == 0
    assert "satellite/acme/demo@2.1.0      acme-satellites  Does the demo." in named.output
    assert "satellite/acme/old-demo@2.1.0  acme-satellites  alias of satellite/acme/demo" in named.output
