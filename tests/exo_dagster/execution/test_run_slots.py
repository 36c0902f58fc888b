"""A cluster's `concurrency:` without the daemon: `exo run` processes started together take turns (the
run guard, execution/run_slots.py), and a run cancelled while it waits ends at once. The run queue's
config (execution/run_queue.py) carries one limit per cluster next to the operator's own limits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from exo_dagster.execution.run_executor import asset_run_tags
from exo_dagster.execution.run_queue import ExoRunCoordinator, cluster_limits
from tests.loopback import http_server

ROOT = Path(__file__).resolve().parents[3]

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/{name}
  executor: in-process
  {concurrency}
  satellites:
    - name: Wait for the service
      uses: satellite/exospherehost/call-webhook
      identifier: wait
      config: {{url: "{url}/slow", mode: per-batch, body: {{ping: 1}}, timeout: 120}}
"""


def _write(tmp_path: Path, name: str, url: str, limit: int | None) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CLUSTER.format(name=name, url=url, concurrency=f"concurrency: {limit}" if limit else ""))
    return path


def _exo_run(tmp_path: Path, path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "EXO_DATA_DIR": str(tmp_path / "exo"),
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / f"{path.stem}-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "exo_dagster.cli", "run", str(path)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _events(instance, run_id: str, kind) -> list:
    return [r.event_log_entry for r in instance.get_records_for_run(run_id, of_type=kind).records]


def _step_span(instance, run_id: str) -> tuple[float, float]:
    starts = _events(instance, run_id, dg.DagsterEventType.STEP_START)
    ends = _events(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)
    assert starts and ends, f"run {run_id} ran no step to success"
    return min(e.timestamp for e in starts), max(e.timestamp for e in ends)


def _waited(instance, run_id: str) -> bool:
    return any(
        "waiting for a slot" in (e.dagster_event.message or "")
        for e in _events(instance, run_id, dg.DagsterEventType.ENGINE_EVENT)
    )


def _home_instance(tmp_path: Path) -> dg.DagsterInstance:
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home")))


def _prepare_home(tmp_path: Path) -> None:
    """Create the SQLite databases first: two processes creating them at once race."""
    (tmp_path / "home").mkdir()
    with _home_instance(tmp_path) as instance:
        instance.get_runs(limit=1)
        instance.fetch_materializations(dg.AssetKey("none"), limit=1)


@pytest.mark.slow
def test_two_exo_runs_of_a_concurrency_1_cluster_take_turns(tmp_path):
    _prepare_home(tmp_path)
    with http_server() as slow:
        slow.delay = 5  # long enough that the second process starts while the first run holds the slot
        path = _write(tmp_path, "one-at-a-time", slow.url, 1)
        procs = [_exo_run(tmp_path, path) for _ in range(2)]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    with _home_instance(tmp_path) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="t__one_at_a_time"))
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.tags["exo/concurrency"] == "1:t/one-at-a-time" for r in runs)
        (_, first_end), (second_start, _) = sorted(_step_span(instance, r.run_id) for r in runs)
        assert second_start >= first_end, "the second run's step started before the first run's ended"
        assert sum(_waited(instance, r.run_id) for r in runs) == 1  # the later one said why it waited


@pytest.mark.slow
def test_a_run_cancelled_while_it_waits_ends_cancelled_without_running_a_step(tmp_path):
    _prepare_home(tmp_path)
    with http_server() as slow:
        slow.delay = 20
        path = _write(tmp_path, "hold", slow.url, 1)
        first = _exo_run(tmp_path, path)
        slow.wait_for("/slow", 1, timeout=120)  # the first run holds the only slot
        second = _exo_run(tmp_path, path)
        with _home_instance(tmp_path) as instance:
            deadline = time.monotonic() + 120
            while True:
                waiting = [
                    r for r in instance.get_runs(dg.RunsFilter(job_name="t__hold")) if _waited(instance, r.run_id)
                ]
                if waiting or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert waiting, "the second run never said it was waiting for a slot"
            [run] = waiting
            instance.report_run_canceling(run)
            assert second.wait(timeout=60) == 1  # ended while the first run still holds its slot
            assert first.poll() is None
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELED
            assert not _events(instance, run.run_id, dg.DagsterEventType.STEP_START)
            assert len(slow.to("/slow")) == 1
        first.kill()
        first.wait(timeout=60)


@dg.op
def _noop():
    return None


@dg.job
def _tagged():
    _noop()


@pytest.mark.slow
def test_the_run_queue_holds_one_limit_per_cluster_next_to_the_operators_own():
    coordinator = {
        "module": "exo_dagster.execution.run_queue",
        "class": "ExoRunCoordinator",
        "config": {"max_concurrent_runs": 7, "tag_concurrency_limits": [{"key": "team", "value": "a", "limit": 2}]},
    }
    with dg.instance_for_test(overrides={"run_coordinator": coordinator}) as instance:
        assert isinstance(instance.run_coordinator, ExoRunCoordinator)
        assert instance.get_concurrency_config().run_queue_config.tag_concurrency_limits == [
            {"key": "team", "value": "a", "limit": 2}
        ]
        for tags in (
            {"exo/concurrency": "1:t/a"},
            {"exo/concurrency": "1:t/a"},
            {"exo/concurrency": "3:t/b"},
            {"exo/concurrency": "not-exo"},
        ):
            instance.create_run_for_job(job_def=_tagged, tags=tags)
        config = instance.get_concurrency_config().run_queue_config  # what the daemon reads at each iteration
        assert config.max_concurrent_runs == 7
        assert config.tag_concurrency_limits == [
            {"key": "team", "value": "a", "limit": 2},
            {"key": "exo/concurrency", "value": "1:t/a", "limit": 1},
            {"key": "exo/concurrency", "value": "3:t/b", "limit": 3},
        ]
        assert cluster_limits(instance)[0] == {"key": "exo/concurrency", "value": "1:t/a", "limit": 1}


def test_an_asset_selection_run_over_two_clusters_takes_the_smaller_limit():
    tags = {
        "a": {"exo/cluster": "t/a", "exo/concurrency": "4:t/a"},
        "b": {"exo/cluster": "t/b", "exo/concurrency": "2:t/b"},
        "c": {"exo/cluster": "t/c"},
    }
    merged = asset_run_tags(["a", "b", "c"], tags.__getitem__)
    assert merged["exo/concurrency"] == "2:t/b" and merged["exo/cluster"] == "t/a,t/b,t/c"
    assert asset_run_tags(["c"], tags.__getitem__).get("exo/concurrency") is None


def test_only_tag_values_exo_wrote_are_limits():
    from exo_dagster.execution.run_slots import concurrency_tag, parse_tag

    assert parse_tag(concurrency_tag(2, "t/a")) == (2, "t/a")
    assert [parse_tag(v) for v in ("0:t/a", "-1:t/a", "x:t/a", "3", "3:")] == [None] * 5
