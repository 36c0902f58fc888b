"""Compiled steps at run time: templates resolve, per-row input is a table, secrets stay scoped."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry

SEEN: dict[str, object] = {}


class EchoConfig(SatelliteConfig):
    greeting: str = "hi"
    count: int = 1


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/echo", config=EchoConfig, registry=extra)
    def echo(ctx: StepContext, config: EchoConfig):
        SEEN["config"] = config
        SEEN["secrets"] = dict(ctx.secrets)
        SEEN["input"] = ctx.input
        if ctx.rows is not None:
            return ctx.rows
        return pl.DataFrame({"greeting": [config.greeting] * config.count})

    return builtin_registry().merged(extra)


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/runtime
  secrets:
    - TOKEN: ${{ env.EXO_TEST_TOKEN }}
  satellites:
    - name: Seed rows
      uses: satellite/exospherehost/sql
      identifier: people
      config: {query: "select * from (values ('ada', 36), ('alan', 41)) t(name, age)"}
    - name: Greet each
      uses: satellite/test/echo
      identifier: greet
      config:
        greeting: "hello from ${{ cluster.identifier }}"
        count: ${{ env.EXO_TEST_COUNT }}
        secrets:
          - API_KEY: ${{ secrets.TOKEN }}
      input:
        line: "$${{ satellites.people.output.name }} is $${{ satellites.people.output.age }}"
        age: $${{ satellites.people.output.age }}
        names: ${{ satellites.people.output.name }}
"""


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    return tmp_path / "exo"


def _run(text: str, registry: Registry, **env) -> dg.ExecuteInProcessResult:
    cluster = parse_cluster(text, "runtime.yaml", registry=registry)
    defs = compile_cluster(cluster)
    return defs.resolve_job_def(cluster.job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def test_templates_per_row_and_secrets(data_dir, monkeypatch):
    monkeypatch.setenv("EXO_TEST_TOKEN", "tok-SECRET-4242")
    monkeypatch.setenv("EXO_TEST_COUNT", "2")
    result = _run(CLUSTER, _registry())
    assert result.success
    assert SEEN["config"].greeting == "hello from test/runtime" and SEEN["config"].count == 2
    assert SEEN["secrets"] == {"API_KEY": "tok-SECRET-4242"}
    assert SEEN["input"] == {"names": ["ada", "alan"]}
    out = pl.read_parquet(data_dir / "outputs" / "test__runtime" / "greet.parquet")
    assert out.to_dicts() == [{"line": "ada is 36", "age": 36}, {"line": "alan is 41", "age": 41}]
    # the secret's value is nowhere in the run's event log
    records = result.dagster_run and dg.DagsterInstance  # noqa: F841
    for event in result.all_events:
        assert "tok-SECRET-4242" not in str(event)


def test_missing_env_var_fails_the_step_with_a_clear_message(data_dir, monkeypatch):
    monkeypatch.delenv("EXO_TEST_TOKEN", raising=False)
    monkeypatch.setenv("EXO_TEST_COUNT", "2")
    result = _run(CLUSTER, _registry())
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "greet__test__runtime"
    assert "environment variable `EXO_TEST_TOKEN`" in failure.event_specific_data.error.to_string()
    # the step before it finished and its output is kept: a re-execution starts from `greet`
    assert (data_dir / "outputs" / "test__runtime" / "people.parquet").exists()


def test_config_invalid_after_templates_names_the_step(data_dir, monkeypatch):
    monkeypatch.setenv("EXO_TEST_TOKEN", "tok-SECRET-4242")
    monkeypatch.setenv("EXO_TEST_COUNT", "many")
    result = _run(CLUSTER, _registry())
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.event_specific_data.error.to_string()
    assert "config of step `greet` is invalid" in message and "count" in message


def test_downstream_user_asset_gets_a_lazyframe(data_dir):
    """Hand-written Dagster code can read a step's output through the exo IO manager as a LazyFrame."""
    cluster = parse_cluster(
        CLUSTER.split("    - name: Greet each")[0].replace("  secrets:\n    - TOKEN: ${{ env.EXO_TEST_TOKEN }}\n", ""),
        "x.yaml",
    )
    defs = compile_cluster(cluster)

    @dg.asset(ins={"people": dg.AssetIn(key=dg.AssetKey(["test", "runtime", "people"]))}, io_manager_key="exo_io")
    def adults(people: pl.LazyFrame) -> pl.DataFrame:
        assert isinstance(people, pl.LazyFrame)
        return people.filter(pl.col("age") > 40).collect()

    merged = dg.Definitions.merge(defs, dg.Definitions(assets=[adults]))
    result = dg.materialize([*merged.assets], resources=merged.resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert pl.read_parquet(data_dir / "outputs" / "adults.parquet")["name"].to_list() == ["alan"]
