"""Triggers: the files sensor's scan and cursor, the after sensor over real materializations, and
what each trigger compiles to. (The daemon runs them for real in tests/definitions/test_daemon.py.)"""

from __future__ import annotations

import json
import os
import time

import dagster as dg
import pytest

from exo_dagster import SpecError, compile_cluster, compile_clusters, parse_cluster
from exo_dagster.compile.triggers import batch_key, scan


def _write(path, text: str, age: float = 0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age:
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    return path


def test_scan_finds_new_and_changed_files_once(tmp_path):
    folder = tmp_path / "in"
    _write(folder / "a.csv", "1", age=60)
    _write(folder / "b.csv", "2", age=60)
    _write(folder / "notes.txt", "x", age=60)
    _write(folder / ".c.csv.tmp", "partial", age=60)
    batch, state = scan(folder, "*.csv", 0, {})
    assert sorted(batch) == ["a.csv", "b.csv"] and set(state) == {"a.csv", "b.csv"}
    assert scan(folder, "*.csv", 0, state) == ({}, state)  # nothing new: no batch
    stamp = time.time() - 30
    os.utime(folder / "a.csv", (stamp, stamp))  # touched, same content: not new work
    batch, touched = scan(folder, "*.csv", 0, state)
    assert batch == {} and touched["a.csv"][1] != state["a.csv"][1]
    _write(folder / "b.csv", "2 changed", age=20)
    batch, state2 = scan(folder, "*.csv", 0, touched)
    assert list(batch) == ["b.csv"]
    (folder / "a.csv").unlink()
    assert "a.csv" not in scan(folder, "*.csv", 0, state2)[1]


def test_scan_waits_for_min_age_and_descends_with_double_star(tmp_path):
    folder = tmp_path / "in"
    _write(folder / "fresh.csv", "still being written")
    _write(folder / "sub" / "deep.csv", "1", age=120)
    batch, state = scan(folder, "*.csv", 10, {})
    assert batch == {} and state == {}  # too young: left for a later tick
    batch, state = scan(folder, "*.csv", 10, {}, now=time.time() + 11)
    assert list(batch) == ["fresh.csv"]
    batch, _ = scan(folder, "**/*.csv", 10, {}, now=time.time() + 11)
    assert sorted(batch) == ["fresh.csv", "sub/deep.csv"]


def test_batch_key_is_a_content_hash():
    assert batch_key({"a": "h1", "b": "h2"}) == batch_key({"b": "h2", "a": "h1"})
    assert batch_key({"a": "h1"}) != batch_key({"a": "h2"})


FILES = """\
version: 0.0.1b
cluster:
  identifier: t/watch
  trigger:
    files: {{path: {folder}, pattern: "*.jsonl", min-age: 0, interval: 2s}}
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-files
      config: {{folder-path: {folder}}}
"""


def test_files_sensor_one_run_per_batch_with_a_content_hash_run_key(tmp_path):
    folder = tmp_path / "drop"
    cluster = parse_cluster(FILES.format(folder=folder), str(tmp_path / "w.yaml"))
    defs = compile_cluster(cluster)
    [sensor] = [s for s in defs.sensors if s.name == "t__watch__files"]
    assert sensor.job_name == "t__watch" and sensor.minimum_interval_seconds == 2
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.tags == {"exo/cluster": "t/watch", "exo/trigger": "files"} and "cluster/t/watch" in sensor.description
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert first.run_requests == [] and "does not exist" in first.skip_message
        _write(folder / "1.jsonl", '{"a": 1}', age=5)
        _write(folder / "2.jsonl", '{"a": 2}', age=5)
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        [request] = tick.run_requests
        hashes = json.loads(tick.cursor)
        assert request.run_key == batch_key({k: v[2] for k, v in hashes.items()})
        assert (
            json.loads(request.tags["exo/files"]) == ["1.jsonl", "2.jsonl"] and request.tags["exo/files-count"] == "2"
        )
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor))
        assert again.run_requests == [] and "no new or changed files" in again.skip_message
        _write(folder / "3.jsonl", '{"a": 3}', age=5)
        third = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor))
        [request3] = third.run_requests
        assert json.loads(request3.tags["exo/files"]) == ["3.jsonl"] and request3.run_key != request.run_key


UPSTREAM = """\
version: 0.0.1b
cluster:
  identifier: t/upstream
  satellites:
    - name: Numbers
      uses: satellite/exospherehost/sql
      config: {query: "select QUERY as n"}
    - name: Total
      uses: satellite/exospherehost/sql
      config: {query: "select sum(n) as total from numbers"}
"""

DOWNSTREAM = """\
version: 0.0.1b
cluster:
  identifier: t/downstream
  trigger: {after: cluster/t/upstream}
  satellites:
    - name: Report
      uses: satellite/exospherehost/sql
      config: {query: "select 1 as ok"}
"""


@pytest.mark.slow
def test_after_sensor_runs_once_per_successful_upstream_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))

    def defs_for(query: str) -> dg.Definitions:
        return compile_clusters(
            [
                parse_cluster(UPSTREAM.replace("QUERY", query), str(tmp_path / "u.yaml")),
                parse_cluster(DOWNSTREAM, str(tmp_path / "d.yaml")),
            ]
        )

    defs = defs_for("1")
    [sensor] = [s for s in defs.sensors if s.name == "t__downstream__after"]
    assert sensor.job_name == "t__downstream" and sensor.tags["exo/trigger"] == "after"
    repo = defs.get_repository_def()

    def tick(instance, cursor):
        context = dg.build_multi_asset_sensor_context(
            monitored_assets=dg.AssetSelection.groups("t__upstream"),
            repository_def=repo,
            instance=instance,
            cursor=cursor,
        )
        return sensor.evaluate_tick(context)

    with dg.instance_for_test() as instance:
        empty = tick(instance, None)
        assert empty.run_requests == [] and "no new materializations" in empty.skip_message
        run = defs.resolve_job_def("t__upstream").execute_in_process(instance=instance)
        first = tick(instance, None)
        [request] = first.run_requests
        assert request.tags["exo/after-runs"] == run.run_id and request.run_key
        assert tick(instance, first.cursor).run_requests == []  # consumed: no second run
        # a failed upstream run materializes `numbers` only: no downstream run
        failed = (
            defs_for("error('boom')")
            .resolve_job_def("t__upstream")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not failed.success
        second = tick(instance, first.cursor)
        assert second.run_requests == []
        run2 = defs.resolve_job_def("t__upstream").execute_in_process(instance=instance)
        [request2] = tick(instance, second.cursor).run_requests
        assert request2.tags["exo/after-runs"] == run2.run_id and request2.run_key != request.run_key


def test_trigger_compile_results_and_errors(tmp_path):
    cron = parse_cluster(
        DOWNSTREAM.replace("{after: cluster/t/upstream}", '{cron: "30 6 * * 1-5", timezone: Europe/Berlin}'),
        str(tmp_path / "c.yaml"),
    )
    [schedule] = compile_cluster(cron).schedules
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "30 6 * * 1-5",
        "Europe/Berlin",
        "t__downstream",
    )
    manual = parse_cluster(DOWNSTREAM.replace("{after: cluster/t/upstream}", "none"), str(tmp_path / "m.yaml"))
    defs = compile_cluster(manual)
    assert not list(defs.schedules or []) and not list(defs.sensors or [])
    itself = parse_cluster(DOWNSTREAM.replace("cluster/t/upstream", "cluster/t/downstream"), str(tmp_path / "s.yaml"))
    with pytest.raises(ValueError, match="cannot run after itself"):
        compile_cluster(itself)
    with pytest.raises(SpecError, match=r"b.yaml:4:20: error: `after`: String should match pattern"):
        parse_cluster(DOWNSTREAM.replace("cluster/t/upstream", "upstream"), str(tmp_path / "b.yaml"))
