"""Run slots that cannot be forged or leaked (issue 21, class 6): a cluster's `concurrency:` comes from its
definition, so a launcher's `exo/concurrency` or `exo/slot` tag never raises it, in the run guard or in the
run queue; a slot whose holder process is gone (SIGKILL) is released and its run reported failed."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace

import dagster as dg
import pytest

from exo_dagster.dagster_private import DagsterEvent
from exo_dagster.execution import run_slots
from exo_dagster.execution.run_slots import CONCURRENCY_TAG, SLOT_TAG, Claim, SlotWaitCancelled, wait_for_slot
from tests.exo_dagster.execution.test_run_slots import (
    CLUSTER,
    ROOT,
    _events,
    _exo_run,
    _home_instance,
    _prepare_home,
    _waited,
)
from tests.loopback import http_server


@dg.op
def _noop():
    return None


@dg.job
def _plain():
    _noop()


def _start(instance: dg.DagsterInstance, tags: dict | None = None, run_id: str | None = None) -> str:
    """A run in STARTED state with its start time, as a run worker or `exo run` leaves it."""
    run = instance.create_run_for_job(job_def=_plain, tags=tags, run_id=run_id)
    instance.report_dagster_event(DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id)
    return run.run_id


def _end(instance: dg.DagsterInstance, run_id: str) -> None:
    instance.report_dagster_event(DagsterEvent(dg.DagsterEventType.RUN_SUCCESS.value, job_name="_plain"), run_id)


def _hold(instance: dg.DagsterInstance, limits: dict[str, int], tags: dict | None = None) -> str:
    run_id = _start(instance, tags)
    assert list(wait_for_slot(instance, run_id, limits, sleep=_must_not_wait)) == []
    return run_id


def _must_not_wait(_seconds: float) -> None:
    raise AssertionError("waited although a slot was free")


class _Stop(Exception):
    pass


def _waits(instance: dg.DagsterInstance, run_id: str, limits: dict[str, int]) -> list[str]:
    """The messages of a run that has to wait (stopped at its second poll)."""
    polls = []

    def sleep(_seconds):
        polls.append(_seconds)
        if len(polls) > 1:
            raise _Stop

    messages = []
    with pytest.raises(_Stop):
        for message in wait_for_slot(instance, run_id, limits, sleep=sleep):
            messages.append(message)
    return messages


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    """One instance for the in-process tests (creating one takes seconds), with one event log database for
    all runs (not a database per run); each test has its own cluster."""
    events = {
        "module": "dagster._core.storage.event_log",
        "class": "ConsolidatedSqliteEventLogStorage",
        "config": {"base_dir": str(tmp_path_factory.mktemp("events"))},
    }
    with dg.instance_for_test(overrides={"event_log_storage": events}) as shared:
        yield shared


@pytest.fixture
def c(request) -> str:
    """A cluster identifier of this test's own: other tests' runs never share its slots."""
    return f"t/{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]}"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- the limit is the definition's -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_forged_tag_neither_raises_the_limit_nor_escapes_the_cluster_in_the_run_guard(instance, c):
    holder = _hold(instance, {c: 1}, {CONCURRENCY_TAG: f"1:{c}"})
    for forged in (f"9:{c}", "1:t/other", "", "x"):
        run_id = _start(instance, {CONCURRENCY_TAG: forged})
        [message] = _waits(instance, run_id, {c: 1})  # the definition's limit, whatever the tag says
        assert message.startswith(f"waiting for a slot (1 of cluster/{c} running, `concurrency: 1`)")
        assert holder[:8] in message
        _end(instance, run_id)
    _end(instance, holder)
    late = _start(instance, {CONCURRENCY_TAG: f"9:{c}"})
    assert list(wait_for_slot(instance, late, {c: 1}, sleep=_must_not_wait)) == []
    _end(instance, late)


def test_a_launchers_claim_never_counts_nor_ends_its_run(instance, c):
    """A claim a launcher set on its run (even naming the run, as `--run-id` allows) lacks the run's start time."""
    run_id = "f0f0f0f0-0000-4000-8000-000000000001"
    claim = Claim(run_id, None, (c,), 0, run_slots.machine(), _dead_pid(), None)
    _start(instance, {SLOT_TAG: claim.value()}, run_id=run_id)
    for started in (None, 0.0, time.time()):  # a launcher sets tags before the run starts: it cannot know when
        instance.add_run_tags(run_id, {SLOT_TAG: replace(claim, started=started).value()})
        assert [k for k in run_slots.claims(instance) if c in k.clusters] == []
        other = _start(instance)
        assert list(wait_for_slot(instance, other, {c: 1}, sleep=_must_not_wait)) == []
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # not reported failed
        _end(instance, other)
    _end(instance, run_id)


def test_the_definition_gives_the_limit_and_a_launchers_tag_is_rewritten(tmp_path):
    from exo_dagster.catalog.loading import load_cluster_file

    clusters = []
    for name, limit in (("a", "concurrency: 3"), ("b", "concurrency: 2"), ("c", "")):
        (tmp_path / f"{name}.yaml").write_text(CLUSTER.format(name=name, url="http://127.0.0.1:9", concurrency=limit))
        clusters.append(load_cluster_file(str(tmp_path / f"{name}.yaml")))
    assert run_slots.limits(clusters) == {"t/a": 3, "t/b": 2}
    assert run_slots.definition_tag(clusters) == "2:t/b" and run_slots.definition_tag(clusters[2:]) is None
    assert run_slots.corrected({CONCURRENCY_TAG: "9:t/b"}, "2:t/b") == {CONCURRENCY_TAG: "2:t/b"}
    assert run_slots.corrected({CONCURRENCY_TAG: "2:t/b"}, "2:t/b") == {}
    assert run_slots.corrected({CONCURRENCY_TAG: "1:t/x"}, None) == {CONCURRENCY_TAG: ""}  # void, not a limit
    assert run_slots.corrected({}, None) == {}


# --- a slot whose holder is gone --------------------------------------------------------------------------------


@pytest.mark.parametrize("gone", ["no such pid", "zombie", "pid reused"])
def test_a_claim_whose_process_is_gone_is_released_and_its_run_reported_failed(instance, c, gone):
    holder = _hold(instance, {c: 1})
    claim = Claim.of(instance.get_run_record_by_id(holder))
    zombie = None
    if gone == "no such pid":
        claim = replace(claim, pid=_dead_pid(), since=None)
    elif gone == "zombie":  # killed, not yet waited for by its parent
        zombie = subprocess.Popen(["true"])
        while (run_slots._stat(zombie.pid) or ("Z",))[0] != "Z":
            time.sleep(0.01)
        claim = replace(claim, pid=zombie.pid, since=run_slots.process_start(zombie.pid))
    else:
        claim = replace(claim, since=str(int(claim.since) - 1))  # this pid, an earlier process
    instance.add_run_tags(holder, {SLOT_TAG: claim.value()})
    waiter = _start(instance)
    assert list(wait_for_slot(instance, waiter, {c: 1}, sleep=_must_not_wait)) == []
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.FAILURE
    [failure] = _events(instance, holder, dg.DagsterEventType.RUN_FAILURE)
    assert f"pid {claim.pid}" in failure.dagster_event.message
    assert f"cluster/{c} is released" in failure.dagster_event.message
    _end(instance, waiter)
    if zombie is not None:
        zombie.wait()


def test_a_dead_holder_being_cancelled_ends_cancelled_and_the_queue_releases_it_too(instance, c):
    holder = _hold(instance, {c: 1})
    claim = Claim.of(instance.get_run_record_by_id(holder))
    instance.add_run_tags(holder, {SLOT_TAG: replace(claim, pid=_dead_pid(), since=None).value()})
    instance.report_run_canceling(instance.get_run_by_id(holder))
    run_slots.release_dead(instance)  # what ExoRunCoordinator does at each daemon iteration
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.CANCELED


def test_a_live_holder_or_one_on_another_machine_keeps_its_slot(instance, c):
    holder = _hold(instance, {c: 1})
    claim = Claim.of(instance.get_run_record_by_id(holder))
    assert claim.pid == os.getpid() and claim.alive()
    for kept in (claim, replace(claim, host="elsewhere/000000000000", pid=_dead_pid())):
        instance.add_run_tags(holder, {SLOT_TAG: kept.value()})
        waiter = _start(instance)
        assert _waits(instance, waiter, {c: 1})
        assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED
        _end(instance, waiter)
    _end(instance, holder)


def test_a_run_ended_by_another_process_while_it_waits_runs_no_step(instance, c):
    holder = _hold(instance, {c: 1})
    waiter = _start(instance)

    def sleep(_seconds):
        instance.report_run_failed(instance.get_run_by_id(waiter), message="ended elsewhere")

    with pytest.raises(SlotWaitCancelled, match=rf"ended \(FAILURE\) while waiting for a slot of cluster/{c}"):
        list(wait_for_slot(instance, waiter, {c: 1}, sleep=sleep))
    _end(instance, holder)


def test_a_run_between_its_two_writes_is_waited_for(instance, c, monkeypatch):
    """Bakery's "choosing": A has read the tickets and stalls before writing its own; B, later, takes the same
    ticket and must wait for A's (A's run id is smaller, so A goes first), not pass while A has none."""
    a, b = (_start(instance, run_id=f"{digit * 8}-0000-4000-8000-000000000000") for digit in "0f")
    stalled, resume, order = threading.Event(), threading.Event(), []
    real = instance.add_run_tags

    def add_run_tags(run_id, tags):
        if run_id == a and '"ticket":null' not in tags.get(SLOT_TAG, '"ticket":null'):
            stalled.set()
            assert resume.wait(60)
        return real(run_id, tags)

    monkeypatch.setattr(instance, "add_run_tags", add_run_tags)
    first = threading.Thread(target=lambda: (list(wait_for_slot(instance, a, {c: 1})), order.append("a holds")))
    first.start()
    assert stalled.wait(60)

    def sleep(_seconds):
        if not resume.is_set():
            resume.set()
            first.join(60)
            order.append("a ended")
            _end(instance, a)

    list(wait_for_slot(instance, b, {c: 1}, sleep=sleep))
    order.append("b holds")
    assert order == ["a holds", "a ended", "b holds"]
    _end(instance, b)


# --- property: no interleaving, no forged tag, runs more than the limit ---------------------------------------

SELECTIONS = [("a",), ("b",), ("a", "b")]  # an asset selection over two clusters holds a slot of each


def _forged_tags(rng: random.Random, run_id: str, limits: dict[str, int]) -> dict[str, str]:
    """What a launcher could set: any limit, any claim (naming the run, as `--run-id` allows), garbage."""
    claim = Claim(
        run_id,
        rng.choice([None, 0.0, time.time()]),
        tuple(rng.sample(sorted(limits), rng.randint(0, 2))),
        rng.choice([None, 0, 1]),
        rng.choice([run_slots.machine(), "elsewhere/1"]),
        rng.choice([os.getpid(), 1, 2**22]),
        None,
    )
    a = sorted(limits)[0]
    return {
        CONCURRENCY_TAG: rng.choice([f"9:{a}", f"100:{a}", "1:t/zzz", "", f"0:{a}", f"-1:{a}"]),
        SLOT_TAG: rng.choice([claim.value(), "[" * 5000, "{}", json.dumps({"run": run_id}), "null", "x"]),
    }


@pytest.mark.slow
def test_no_interleaving_of_runs_with_forged_tags_holds_more_slots_than_the_limit(instance, c):
    limits = {f"{c}-a": 1, f"{c}-b": 2}
    inside, peak, done, errors = Counter(), Counter(), [], []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(RUNS_PER_WORKER):
                selection = [f"{c}-{k}" for k in rng.choice(SELECTIONS)]
                run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                forged = _forged_tags(rng, run_id, limits) if rng.random() < 0.7 else None
                _start(instance, forged, run_id=run_id)
                if forged:
                    with lock:
                        inside["forged"] += 1
                for _ in wait_for_slot(
                    instance, run_id, {k: limits[k] for k in selection}, sleep=lambda s: time.sleep(min(s, 0.02))
                ):
                    pass
                with lock:
                    inside.update(selection)
                    for k in selection:
                        peak[k] = max(peak[k], inside[k])
                time.sleep(rng.uniform(0, 0.02))
                with lock:
                    inside.subtract(selection)
                _end(instance, run_id)
                done.append(run_id)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(done) == WORKERS * RUNS_PER_WORKER, "a run never got its slot (deadlock)"
    assert peak[f"{c}-a"] == 1 and 1 <= peak[f"{c}-b"] <= 2, peak  # never above the definition's limit
    print(
        f"{len(done)} runs ({inside['forged']} with forged tags) in {WORKERS} threads, "
        f"{time.monotonic() - started:.1f}s: peak slots held {dict(peak)}"
    )


WORKERS, RUNS_PER_WORKER = 6, 6


# --- the run queue ----------------------------------------------------------------------------------------------

DAGSTER_YAML_QUEUE = {"module": "exo_dagster.execution.run_queue", "class": "ExoRunCoordinator"}


@pytest.mark.slow
def test_the_run_queue_takes_the_limit_from_the_definition_not_from_the_launchers_tag(tmp_path, monkeypatch):
    """`dagster job launch --tags '{"exo/concurrency": "9:t/q"}'` while a run of t/q holds its only slot:
    the coordinator rewrites the tag from the job's definition, and Dagster's daemon keeps the run queued."""
    from dagster._cli.job import _create_run
    from dagster._core.test_utils import in_process_test_workspace
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    (tmp_path / "clusters").mkdir()
    for name, limit in (("q", "concurrency: 1"), ("free", "")):
        text = CLUSTER.format(name=name, url="http://127.0.0.1:9", concurrency=limit)
        (tmp_path / "clusters" / f"{name}.yaml").write_text(text)
    (tmp_path / "defs.py").write_text(
        f"from exo_dagster.location import definitions_for\n\ndefs = definitions_for({str(tmp_path / 'clusters')!r})\n"
    )
    origin = LoadableTargetOrigin(
        python_file=str(tmp_path / "defs.py"), attribute="defs", working_directory=str(tmp_path)
    )
    with (
        dg.instance_for_test(overrides={"run_coordinator": DAGSTER_YAML_QUEUE}) as instance,
        in_process_test_workspace(instance, origin) as workspace,
    ):
        location = workspace.code_locations[0]
        repo = location.get_repositories()[next(iter(location.get_repositories()))]

        def launch(job: str, tags: dict) -> dg.DagsterRun:
            run = _create_run(
                instance=instance,
                code_location=location,
                remote_repo=repo,
                remote_job=repo.get_full_job(job),
                run_config={},
                tags=tags,
                op_selection=None,
                run_id=None,
            )
            return instance.submit_run(run.run_id, workspace)

        holding = launch("t__q", {})
        assert holding.tags[CONCURRENCY_TAG] == "1:t/q"
        instance.report_dagster_event(
            DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name="t__q"), holding.run_id
        )
        forged = launch("t__q", {CONCURRENCY_TAG: "9:t/q", SLOT_TAG: "{}"})
        assert forged.status == dg.DagsterRunStatus.QUEUED
        assert forged.tags[CONCURRENCY_TAG] == "1:t/q"  # the definition's, not the launcher's
        assert forged.tags[SLOT_TAG] == ""
        free = launch("t__free", {CONCURRENCY_TAG: "1:t/q"})  # nor can a launcher move a run into a cluster's queue
        assert free.tags[CONCURRENCY_TAG] == ""
        materialize = _materialize(instance, workspace, location, repo, "t__q", {CONCURRENCY_TAG: "9:t/q"})
        assert materialize.tags[CONCURRENCY_TAG] == "1:t/q"  # an asset selection: the limit of its assets' cluster
        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        dequeued = [r.run_id for r in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)]
        assert dequeued == [free.run_id]  # Dagster's own daemon logic: the forged runs stay queued
        _end(instance, holding.run_id)
        dequeued = [r.run_id for r in daemon._get_runs_to_dequeue(instance, instance.get_concurrency_config(), None)]
        assert forged.run_id in dequeued and materialize.run_id not in dequeued  # one at a time


def _materialize(instance, workspace, location, repo, job: str, tags: dict) -> dg.DagsterRun:
    """The UI's "Materialize all" of one cluster's assets (Dagster's implicit asset job), with a launcher's tags."""
    from dagster._core.definitions.selector import JobSubsetSelector

    keys = frozenset(node.asset_key for node in repo.get_asset_node_snaps() if job in node.job_names)
    remote = location.get_job(
        JobSubsetSelector(
            location_name=location.name,
            repository_name=repo.name,
            job_name="__ASSET_JOB",
            op_selection=None,
            asset_selection=keys,
        )
    )
    plan = location.get_execution_plan(remote, {}, step_keys_to_execute=None, known_state=None, instance=instance)
    run = instance.create_run(
        job_name="__ASSET_JOB",
        run_id=None,
        run_config={},
        status=None,
        tags={**remote.run_tags, **tags},
        root_run_id=None,
        parent_run_id=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        job_snapshot=remote.job_snapshot,
        parent_job_snapshot=remote.parent_job_snapshot,
        asset_selection=keys,
        asset_check_selection=None,
        resolved_op_selection=None,
        op_selection=None,
        remote_job_origin=remote.get_remote_origin(),
        job_code_origin=remote.get_python_origin(),
        asset_graph=repo.asset_graph,
    )
    return instance.submit_run(run.run_id, workspace)


# --- end to end: a forged `dagster job execute` waits; SIGKILL the holder and it runs ------------------------------


@pytest.mark.slow
def test_a_forged_run_waits_for_the_holder_and_starts_within_seconds_of_its_sigkill(tmp_path):
    _prepare_home(tmp_path)
    (tmp_path / "clusters").mkdir()
    (tmp_path / "defs.py").write_text(
        f"from exo_dagster.location import definitions_for\n\ndefs = definitions_for({str(tmp_path / 'clusters')!r})\n"
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "home"),
        "EXO_DATA_DIR": str(tmp_path / "exo"),
        "PYTHONPATH": str(ROOT),
    }
    with http_server() as slow, _home_instance(tmp_path) as instance:
        slow.delay = 300  # the holder's step waits on the service until it is killed
        path = tmp_path / "clusters" / "trust.yaml"
        path.write_text(CLUSTER.format(name="trust", url=slow.url, concurrency="concurrency: 1"))
        holder, forged = _exo_run(tmp_path, path), None
        try:
            slow.wait_for("/slow", 1, timeout=180)  # the holder is in its step: it holds the only slot
            forged = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dagster",
                    "job",
                    "execute",
                    "-f",
                    "defs.py",
                    "-j",
                    "t__trust",
                    "--tags",
                    json.dumps({CONCURRENCY_TAG: "9:t/trust"}),
                ],
                cwd=tmp_path,
                env=env,
                stdout=open(tmp_path / "forged.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 180
            while True:
                runs = instance.get_runs(dg.RunsFilter(job_name="t__trust"))
                waiting = [r for r in runs if _waited(instance, r.run_id)]
                if waiting or time.monotonic() > deadline or forged.poll() is not None:
                    break
                time.sleep(0.5)
            assert waiting, (tmp_path / "forged.log").read_text()[-3000:]
            [run] = waiting
            assert instance.get_run_by_id(run.run_id).tags[CONCURRENCY_TAG] == "1:t/trust"  # overwritten by its guard
            assert len(slow.to("/slow")) == 1 and forged.poll() is None
            slow.delay = 0
            killed_at = time.time()
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            assert forged.wait(timeout=180) == 0, (tmp_path / "forged.log").read_text()[-3000:]
        finally:
            for proc in (holder, forged):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        [step_start] = _events(instance, run.run_id, dg.DagsterEventType.STEP_START)
        seconds = step_start.timestamp - killed_at
        print(f"SIGKILL of the slot holder -> the waiting run's step started in {seconds:.2f}s")
        assert seconds < 15
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        [dead] = [r for r in instance.get_runs(dg.RunsFilter(job_name="t__trust")) if r.run_id != run.run_id]
        assert dead.status == dg.DagsterRunStatus.FAILURE  # reported failed, as run monitoring would
        [failure] = _events(instance, dead.run_id, dg.DagsterEventType.RUN_FAILURE)
        assert "is gone" in failure.dagster_event.message
