"""exo's run queue with a real `dagster-daemon`: runs launched from the UI (GraphQL) of a cluster with
`concurrency: 1` start one after another, without any per-cluster line in dagster.yaml; a cluster
without `concurrency:` is not held back, and two limited clusters do not block each other."""

from __future__ import annotations

from itertools import combinations, product

import dagster as dg
import pytest

from tests.definitions.dagster_stack import serving
from tests.exo_dagster.execution.test_run_slots import CLUSTER
from tests.loopback import http_server

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

DAGSTER_YAML = """\
run_coordinator:
  module: exo_dagster.execution.run_queue
  class: ExoRunCoordinator
  config:
    dequeue_interval_seconds: 1
telemetry:
  enabled: false
"""

RUNS = {"free": 2, "other": 2, "solo": 3}  # cluster -> runs launched, in this order
LIMITS = {"free": None, "other": 1, "solo": 1}
SLOW = {"free": 8, "other": 8, "solo": 3}  # seconds the service takes: long enough to overlap when let


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with http_server() as quick, http_server() as slow:
        quick.delay, slow.delay = SLOW["solo"], SLOW["free"]
        clusters = {
            name: CLUSTER.format(
                name=name,
                url=(slow if SLOW[name] == slow.delay else quick).url,
                concurrency=f"concurrency: {limit}" if limit else "",
            )
            for name, limit in LIMITS.items()
        }
        with serving(tmp_path_factory.mktemp("run_queue"), clusters, dagster_yaml=DAGSTER_YAML) as stack:
            yield stack


def _launch(stack, job: str) -> str:
    launched = stack.launch({"jobName": job})
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _spans(stack, job: str) -> list[tuple[float, float]]:
    records = stack.instance.get_run_records(dg.RunsFilter(job_name=job))
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records), [
        (r.dagster_run.run_id, r.dagster_run.status) for r in records
    ]
    return sorted((r.start_time, r.end_time) for r in records)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _waited(stack, run_id: str) -> bool:
    records = stack.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    return any("waiting for a slot" in (r.event_log_entry.dagster_event.message or "") for r in records)


def test_the_daemon_starts_a_limited_clusters_runs_one_at_a_time(stack):
    stack.wait("the code location", stack.location_loaded, timeout=180)
    for name, count in RUNS.items():
        for _ in range(count):
            _launch(stack, f"t__{name}")
    for name, count in RUNS.items():
        stack.finished(f"t__{name}", count)
    free, other, solo = (_spans(stack, f"t__{name}") for name in RUNS)
    assert len(solo) == 3 and len(other) == 2 and len(free) == 2
    for spans in (solo, other):  # one at a time, by the runs' own start and end
        assert not any(_overlap(a, b) for a, b in combinations(spans, 2)), spans
    assert _overlap(*free), free  # no limit: both ran at once
    assert any(_overlap(a, b) for a, b in product(solo, other)), (solo, other)  # the limits are per cluster
    # the queue held them back: no run of a limited cluster started and then had to wait in the run guard
    for run in stack.instance.get_runs(dg.RunsFilter(tags={"exo/concurrency": "1:t/solo"})):
        assert not _waited(stack, run.run_id)
    limits = stack.instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    assert {"key": "exo/concurrency", "value": "1:t/solo", "limit": 1} in limits
