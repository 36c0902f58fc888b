"""`skip-when-empty: true`, run for real (execute_job on a temp instance): a step whose input has no rows
is skipped (Dagster's STEP_SKIPPED, no materialization), so is what depends on it, and the run succeeds."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.sections import run_end
from exo_dagster.sections.failure import run_failure_text
from exo_dagster.spec.ir import op_name, step_of

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

SKIPPED, MATERIALIZED = dg.DagsterEventType.STEP_SKIPPED, dg.DagsterEventType.ASSET_MATERIALIZATION

SEQUENTIAL = """\
version: 0.0.1b
cluster:
  identifier: test/skips
  sla: 5m
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      config: {{query: "select i from range({rows}) t(i)"}}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      skip-when-empty: true
      retries: 2
      timeout: 1m
      config: {{query: "select count(*) as n from orders"}}
    - name: Report
      uses: satellite/exospherehost/sql
      identifier: report
      config: {{query: "select n * 10 as n10 from totals"}}
  failure:
    satellites:
      - name: Note
        uses: satellite/exospherehost/write-table
        config: {{path: failures.parquet}}
        input: {{table: "${{{{ satellites.orders.output }}}}"}}
"""


class TagConfig(SatelliteConfig):
    suffix: str = "!"


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/tag", config=TagConfig, registry=extra)
    def tag(ctx: StepContext, config: TagConfig):
        return ctx.rows.collect().with_columns((pl.col("word") + config.suffix).alias("tagged"))

    return builtin_registry().merged(extra)


def tag_job(path: str):
    """The job of a cluster using the test satellite, rebuilt by name (execute_job's reconstructable job)."""
    cluster = parse_cluster(open(path).read(), path, registry=_registry())
    return compile_cluster(cluster).resolve_job_def(cluster.job_name)


def _execute(instance, path, module="exo_dagster.cli", fn="cluster_job", parent: str | None = None):
    job = dg.build_reconstructable_job(module, fn, reconstructable_args=(str(path),))
    options = dg.ReexecutionOptions(parent_run_id=parent) if parent else None
    with dg.execute_job(job, instance=instance, raise_on_error=False, reexecution_options=options) as result:
        events = list(result.all_events)
        return result.run_id, result.success, events


def _steps(events, kind) -> set[str]:
    """The identifiers (the step key's first part) with an event of `kind`."""
    return {e.step_key.split("__", 1)[0] for e in events if e.event_type == kind and e.step_key}


def _messages(instance, run_id) -> list[str]:
    return [r.user_message for r in instance.all_logs(run_id)]


def test_an_empty_input_skips_the_step_and_what_depends_on_it_and_the_run_succeeds(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    path = tmp_path / "skips.yaml"
    path.write_text(SEQUENTIAL.format(rows=0))
    with dg.instance_for_test() as instance:
        run_id, success, events = _execute(instance, path)
        assert success, run_failure_text(instance, run_id)
        assert _steps(events, SKIPPED) == {"totals", "report"}
        assert _steps(events, MATERIALIZED) == {"orders"}  # no materialization for the skipped steps
        keys = {e.step_key for e in events if e.event_type == SKIPPED}
        assert "totals__test__skips.totals__test__skips" in keys  # the step keeps its op name in the run view
        assert any(e.step_key == "totals__test__skips.totals__test__skips__gate" and e.is_step_success for e in events)
        assert "input `orders` has no rows: skipping step `totals` and what depends on it" in _messages(
            instance, run_id
        )
        assert not (tmp_path / "exo" / "outputs" / "test__skips" / "totals.parquet").exists()

        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/max_runtime"] == "300"  # the SLA applied
        cluster = parse_cluster(path.read_text(), str(path))
        assert run_end.run_sections(instance, cluster, run) == []  # a skipped step is no failure: no failure job

        # re-executing the run skips the same steps again, and succeeds
        again_id, again, events = _execute(instance, path, parent=run_id)
        assert again, run_failure_text(instance, again_id)
        assert _steps(events, SKIPPED) == {"totals", "report"} and _steps(events, MATERIALIZED) == {"orders"}


def test_rows_in_the_input_run_the_step_as_usual(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    path = tmp_path / "skips.yaml"
    path.write_text(SEQUENTIAL.format(rows=3))
    with dg.instance_for_test() as instance:
        run_id, success, events = _execute(instance, path)
        assert success, run_failure_text(instance, run_id)
        assert _steps(events, SKIPPED) == set()
        assert _steps(events, MATERIALIZED) == {"orders", "totals", "report"}
        assert not any("has no rows" in m for m in _messages(instance, run_id))
    outputs = tmp_path / "exo" / "outputs" / "test__skips"
    assert pl.read_parquet(outputs / "report.parquet")["n10"].to_list() == [30]


def test_the_step_op_keeps_its_name_retries_and_tags_and_the_gate_is_a_cpu_op(tmp_path):
    text = SEQUENTIAL.format(rows=0).replace("      retries: 2\n", "      retries: 2\n      resources: {gpu: 1}\n")
    cluster = parse_cluster(text, str(tmp_path / "skips.yaml"))
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    totals = cluster.step("totals")
    graph = job.graph.node_named(op_name(cluster, totals)).definition
    step_op = graph.node_named(op_name(cluster, totals))
    gate = graph.node_named(f"{op_name(cluster, totals)}__gate")
    assert step_op.definition.retry_policy.max_retries == 2
    assert step_op.definition.tags["exo/gpu"] == "1" and step_op.definition.pool == "gpu"
    assert gate.definition.tags["exo/gpu"] == "0" and gate.definition.pool is None  # counting rows needs no GPU
    for key in (
        f"{op_name(cluster, totals)}.{op_name(cluster, totals)}",
        f"{op_name(cluster, totals)}.{op_name(cluster, totals)}__gate",
    ):
        assert step_of(cluster, key) is totals  # the run guard and the failure section find the cluster step


DATAFLOW = """\
version: 0.0.1b
cluster:
  identifier: test/flow
  execution: dataflow
  executor: local
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      config: {query: "select i from range(0) t(i)"}
    - name: Regions
      uses: satellite/exospherehost/sql
      identifier: regions
      config: {query: "select 'eu' as region"}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      skip-when-empty: true
      resources: {gpu: 1}
      config: {query: "select count(*) as n from orders"}
    - name: Report
      uses: satellite/exospherehost/sql
      identifier: report
      config: {query: "select * from totals, regions"}
    - name: Listed
      uses: satellite/exospherehost/sql
      identifier: listed
      skip-when-empty: true
      resources: {gpu: 1}
      config: {query: "select * from regions"}
    - name: Either
      uses: satellite/exospherehost/sql
      identifier: either
      skip-when-empty: true
      config: {query: "select (select count(*) from orders) as o, (select count(*) from regions) as r"}
"""


def test_in_dataflow_only_the_empty_branch_is_skipped(tmp_path, monkeypatch):
    """Siblings that do not read the skipped step run; a step with one non-empty input of two runs;
    on exo's local executor a gated GPU step still computes inside its device lease."""
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    monkeypatch.setenv("EXO_GPUS", "0")
    path = tmp_path / "flow.yaml"
    path.write_text(DATAFLOW)
    with dg.instance_for_test() as instance:
        run_id, success, events = _execute(instance, path)
        assert success, run_failure_text(instance, run_id)
        assert _steps(events, SKIPPED) == {"totals", "report"}
        assert _steps(events, MATERIALIZED) == {"orders", "regions", "listed", "either"}
        leased = {
            e.step_key
            for e in events
            if e.event_type == dg.DagsterEventType.ENGINE_EVENT and "holds GPU device(s)" in (e.message or "")
        }
        assert leased == {"listed__test__flow.listed__test__flow"}  # the skipped GPU step never took a device
        assert instance.get_run_by_id(run_id).tags["exo/executor"] == "local"
    either = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__flow" / "either.parquet")
    assert either.to_dicts() == [{"o": 0, "r": 1}]


PER_ROW = """\
version: 0.0.1b
cluster:
  identifier: test/rows
  executor: in-process
  satellites:
    - name: Words
      uses: satellite/exospherehost/sql
      identifier: words
      config: {{query: "select 'w' || i as word from range({words}) t(i) order by i"}}
    - name: Other
      uses: satellite/exospherehost/sql
      identifier: other
      config: {{query: "select 1 as one"}}
    - name: Tag
      uses: satellite/test/tag
      identifier: tagged
      skip-when-empty: true{fan_out}
      input: {{word: "$${{{{ satellites.words.output.word }}}}"}}
    - name: Count
      uses: satellite/exospherehost/sql
      identifier: counted
      config: {{query: "select count(*) as n from tagged"}}
"""


def test_a_per_row_step_looks_only_at_its_row_source(tmp_path, monkeypatch):
    """`tagged` also follows `other` (sequential), which has a row: its per-row source alone decides."""
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    path = tmp_path / "rows.yaml"
    path.write_text(PER_ROW.format(words=0, fan_out=""))
    with dg.instance_for_test() as instance:
        run_id, success, events = _execute(instance, path, __name__, "tag_job")
        assert success, run_failure_text(instance, run_id)
        assert _steps(events, SKIPPED) == {"tagged", "counted"}
        assert _steps(events, MATERIALIZED) == {"words", "other"}
        assert "input `words` has no rows: skipping step `tagged` and what depends on it" in _messages(instance, run_id)


def test_with_fan_out_the_split_is_the_gate(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    path = tmp_path / "rows.yaml"
    with dg.instance_for_test() as instance:
        path.write_text(PER_ROW.format(words=0, fan_out="\n      fan-out: {chunk-rows: 2}"))
        run_id, success, events = _execute(instance, path, __name__, "tag_job")
        assert success, run_failure_text(instance, run_id)
        assert {e.step_key for e in events if e.event_type == SKIPPED} == {
            "tagged__test__rows.tagged__test__rows__merge",
            "counted__test__rows",
        }
        assert not any("__chunk[" in (e.step_key or "") for e in events)  # no chunk ran
        assert _steps(events, MATERIALIZED) == {"words", "other"}
        assert "input `words` has no rows: skipping step `tagged` and what depends on it" in _messages(instance, run_id)

        path = tmp_path / "rows5.yaml"  # a new file: a reconstructable job is cached by its arguments
        path.write_text(PER_ROW.format(words=5, fan_out="\n      fan-out: {chunk-rows: 2}"))
        run_id, success, events = _execute(instance, path, __name__, "tag_job")
        assert success, run_failure_text(instance, run_id)
        assert _steps(events, SKIPPED) == set()
        assert len({e.step_key for e in events if e.is_step_success and "__chunk[" in e.step_key}) == 3
    assert pl.read_parquet(tmp_path / "exo" / "outputs" / "test__rows" / "counted.parquet")["n"].to_list() == [5]


FAILING = """\
version: 0.0.1b
cluster:
  identifier: test/refail
  execution: dataflow
  executor: in-process
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      config: {query: "select i from range(0) t(i)"}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      skip-when-empty: true
      config: {query: "select count(*) as n from orders"}
    - name: Report
      uses: satellite/exospherehost/sql
      identifier: report
      config: {query: "select * from totals"}
    - name: Bad
      uses: satellite/exospherehost/sql
      identifier: bad
      config: {query: "select nope from orders"}
"""


def test_a_failed_run_with_skipped_steps_blames_the_failure_and_re_executes_from_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    path = tmp_path / "refail.yaml"
    path.write_text(FAILING)
    cluster = parse_cluster(FAILING, str(path))
    with dg.instance_for_test() as instance:
        run_id, success, events = _execute(instance, path)
        assert not success
        assert _steps(events, SKIPPED) == {"totals", "report"}
        failures = [e for e in events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert [step_of(cluster, e.step_key).identifier for e in failures] == ["bad"]  # the skips are no failure
        assert "nope" in run_failure_text(instance, run_id)

        job = dg.build_reconstructable_job("exo_dagster.cli", "cluster_job", reconstructable_args=(str(path),))
        options = dg.ReexecutionOptions.from_failure(run_id, instance)
        with dg.execute_job(job, instance=instance, raise_on_error=False, reexecution_options=options) as again:
            assert instance.get_run_by_id(again.run_id).step_keys_to_execute == ["bad__test__refail"]
            assert [e.step_key for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE] == [
                "bad__test__refail"
            ]
