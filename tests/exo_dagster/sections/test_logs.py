"""The `logs` section in-process: a finished run's records, filtered by level, reach a real HTTP sink."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.sections.logs import RUN_ID_TAG, logs_job_name
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services


class ChattyConfig(SatelliteConfig):
    word: str = "hello"


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/chatty", config=ChattyConfig, registry=extra)
    def chatty(ctx: StepContext, config: ChattyConfig):
        ctx.log.debug(f"debug {config.word}")
        ctx.log.info(f"info {config.word}")
        ctx.log.warning(f"warning {config.word}")
        ctx.log.error(f"error {config.word}")
        return pl.DataFrame({"word": [config.word]})

    return builtin_registry().merged(extra)


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/chatty
  satellites:
    - name: Talk
      uses: satellite/test/chatty
      config: {{word: parrot}}
  logs:
    level: {level}
    satellites:
      - name: Ship
        uses: satellite/exospherehost/forward-logs
        config: {{url: "{url}/ingest", labels: {{env: test}}}}
"""


def _forwarded(tmp_path, monkeypatch, level: str) -> tuple[list[dict], str]:
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    with http_server() as sink, dg.instance_for_test() as instance:
        cluster = parse_cluster(
            CLUSTER.format(level=level, url=sink.url), str(tmp_path / "c.yaml"), registry=_registry()
        )
        defs = compile_cluster(cluster)
        sensors = {s.name: s for s in defs.sensors}
        assert set(sensors) == {"t__chatty__logs_on_success", "t__chatty__logs_on_failure"}
        result = defs.resolve_job_def(cluster.job_name).execute_in_process(instance=instance)
        [event] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS]
        context = dg.build_run_status_sensor_context(
            sensor_name="t__chatty__logs_on_success",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
        )
        request = sensors["t__chatty__logs_on_success"](context)
        assert request.run_key == f"logs:{result.run_id}" and request.tags[RUN_ID_TAG] == result.run_id
        shipped = defs.resolve_job_def(logs_job_name(cluster)).execute_in_process(instance=instance, tags=request.tags)
        assert shipped.success
        # the logs job's own run is not forwarded again
        [own] = [e for e in shipped.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS]
        again = sensors["t__chatty__logs_on_success"](
            dg.build_run_status_sensor_context(
                sensor_name="t__chatty__logs_on_success",
                dagster_event=own,
                dagster_instance=instance,
                dagster_run=instance.get_run_by_id(shipped.run_id),
            )
        )
        assert isinstance(again, dg.SkipReason)
        return [line for r in sink.to("/ingest") for line in r.lines()], result.run_id


def test_warning_level_forwards_warnings_and_errors_only(tmp_path, monkeypatch):
    lines, run_id = _forwarded(tmp_path, monkeypatch, "WARNING")
    mine = [(line["level"], line["message"]) for line in lines if "parrot" in line["message"]]
    assert mine == [("WARNING", "warning parrot"), ("ERROR", "error parrot")]
    assert {line["level"] for line in lines} <= {"WARNING", "ERROR", "CRITICAL"}
    assert {line["run_id"] for line in lines} == {run_id} and {line["env"] for line in lines} == {"test"}
    assert all(line["cluster"] == "t/chatty" and line["job"] == "t__chatty" for line in lines)


def test_debug_level_adds_everything_including_dagster_events(tmp_path, monkeypatch):
    lines, _ = _forwarded(tmp_path, monkeypatch, "DEBUG")
    mine = [line["message"] for line in lines if "parrot" in line["message"]]
    assert mine == ["debug parrot", "info parrot", "warning parrot", "error parrot"]
    events = {line["event_type"] for line in lines if line["event_type"]}
    assert {"RUN_START", "STEP_START", "STEP_SUCCESS", "RUN_SUCCESS"} <= events  # Dagster logs its events at DEBUG
    assert "talk__t__chatty" in {line["step"] for line in lines}


FAILING = """\
version: 0.0.1b
cluster:
  identifier: t/grumpy
  secrets:
    - TOKEN: ${{ env.EXO_TEST_GRUMPY_TOKEN }}
  satellites:
    - name: Refuse
      uses: satellite/test/grumpy
      config:
        secrets:
          - TOKEN: ${{ secrets.TOKEN }}
  logs:
    level: DEBUG
    satellites:
      - name: Ship
        uses: satellite/exospherehost/forward-logs
        config: {url: "URL/ingest"}
"""


def test_every_forwarded_record_has_its_message_with_the_error_and_no_secret(tmp_path, monkeypatch):
    from exo_dagster.sections.run_end import run_sections

    secret = "grumpy-SECRET-41c7d2"
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    monkeypatch.setenv("EXO_TEST_GRUMPY_TOKEN", secret)
    extra = Registry()

    @satellite("satellite/test/grumpy", config=ChattyConfig, registry=extra)
    def grumpy(ctx: StepContext, config: ChattyConfig):
        raise ValueError(f"the service refused token {ctx.secrets['TOKEN']}")

    with http_server() as sink, dg.instance_for_test() as instance:
        cluster = parse_cluster(
            FAILING.replace("URL", sink.url), str(tmp_path / "g.yaml"), registry=builtin_registry().merged(extra)
        )
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success
        [shipped] = run_sections(instance, cluster, instance.get_run_by_id(result.run_id))
        assert shipped.success
        lines = [line for r in sink.to("/ingest") for line in r.lines()]
    assert {"RUN_START", "STEP_FAILURE", "RUN_FAILURE"} <= {line["event_type"] for line in lines}
    assert all(line["message"].strip() for line in lines), [line for line in lines if not line["message"].strip()]
    [failed] = [line for line in lines if line["event_type"] == "STEP_FAILURE"]
    assert "the service refused token ********" in failed["message"]
    assert secret not in repr(lines)
