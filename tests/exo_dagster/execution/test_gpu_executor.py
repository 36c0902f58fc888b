"""exo's local GPU-aware executor, run for real: step processes, simulated devices (EXO_GPUS), a sqlite instance."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from exo_dagster.execution import gpus
from tests.exo_dagster.scaleout_support import (
    cluster_yaml,
    events_of,
    failure_text,
    leases,
    make_home,
    overlapping,
    probes,
    quiet,
    recon_job,
    short,
    write_clusters,
)

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

JOB = "exotest__gpu_mix"


@pytest.fixture
def instance(tmp_path, monkeypatch):
    home = make_home(tmp_path / "home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    with dg.DagsterInstance.get() as inst:
        yield inst


def run(instance, defs, job: str = JOB, **executor_config):
    return dg.execute_job(
        recon_job(job, defs),
        instance=instance,
        raise_on_error=False,
        run_config=quiet({"execution": {"config": executor_config}} if executor_config else None),
    )


MIX = [
    *({"id": f"g{i}", "kind": "gpu", "seconds": 0.4} for i in range(5)),
    {"id": "big", "kind": "gpu", "seconds": 0.4, "resources": {"gpu": 2}},
    {"id": "c0", "kind": "cpu", "seconds": 0.3},
    {"id": "c1", "kind": "cpu", "seconds": 0.3},
]


def test_each_gpu_step_computes_on_its_own_devices_never_shared(instance, tmp_path, monkeypatch):
    defs = write_clusters(tmp_path, monkeypatch, mix=cluster_yaml("exotest/gpu-mix", MIX))
    monkeypatch.setenv("EXO_GPUS", "0,1,2")
    result = run(instance, defs)
    assert result.success, failure_text(instance, result.run_id)

    seen = probes(instance, result.run_id)
    given = {g["step"]: g for g in leases(instance, result.run_id)}
    assert set(seen) == {s["id"] for s in MIX}
    assert set(given) == {"g0", "g1", "g2", "g3", "g4", "big"}  # CPU steps hold no lease
    for step, lease in given.items():
        # the step computed with exactly the devices it was leased, inside the lease
        assert seen[step]["devices"] == lease["devices"], step
        assert lease["acquired"] <= seen[step]["start"] <= seen[step]["end"] <= lease["released"], step
        assert set(lease["devices"].split(",")) <= {"0", "1", "2"}
    assert len(given["big"]["devices"].split(",")) == 2
    assert all(len(given[f"g{i}"]["devices"].split(",")) == 1 for i in range(5))
    assert seen["c0"]["devices"] == "" and seen["c1"]["devices"] == ""  # CPU steps see no GPU at all

    held = [(g["step"], g["devices"], g["acquired"], g["released"]) for g in given.values()]
    assert overlapping(held) == []
    assert overlapping([(s, seen[s]["devices"], seen[s]["start"], seen[s]["end"]) for s in given]) == []
    # and the devices were used in parallel, not one step at a time
    assert any(
        a["acquired"] < b["released"] and b["acquired"] < a["released"]
        for a in given.values()
        for b in given.values()
        if a is not b
    )
    # every GPU step ran in its own process
    assert len({seen[s]["pid"] for s in seen}) == len(seen)
    # each lease is in the run's log, readable by a person
    messages = [r.user_message for r in events_of(instance, result.run_id, dg.DagsterEventType.ENGINE_EVENT)]
    assert any("holds GPU device(s)" in m for m in messages) and any("released GPU device(s)" in m for m in messages)


def test_more_gpus_than_exist_fails_at_launch_with_a_clear_error(instance, tmp_path, monkeypatch):
    defs = write_clusters(tmp_path, monkeypatch, mix=cluster_yaml("exotest/gpu-mix", MIX))
    monkeypatch.setenv("EXO_GPUS", "0")
    started = time.monotonic()
    result = run(instance, defs)
    assert not result.success
    assert time.monotonic() - started < 120  # fails, does not wait for a device that never comes
    text = failure_text(instance, result.run_id)
    assert "not enough GPUs for this run: `big__exotest__gpu_mix` asks for 2" in text
    assert "1 GPU(s) [0] from EXO_GPUS='0'" in text and "fix:" in text
    assert events_of(instance, result.run_id, dg.DagsterEventType.STEP_START) == []  # nothing ran


def test_no_gpu_machine_fails_gpu_steps_unless_cpu_fallback(instance, tmp_path, monkeypatch):
    defs = write_clusters(
        tmp_path,
        monkeypatch,
        mix=cluster_yaml("exotest/gpu-mix", [{"id": "g0", "kind": "gpu"}, {"id": "c0", "kind": "cpu"}]),
    )
    monkeypatch.setenv("EXO_GPUS", "none")
    monkeypatch.setenv("EXO_CPU_FALLBACK", "0")  # strict: the default falls back to CPU where there is no GPU
    failed = run(instance, defs)
    assert not failed.success
    assert "asks for 1, but this executor has 0 GPU(s) [none]" in failure_text(instance, failed.run_id)

    assert "EXO_CPU_FALLBACK=1" in failure_text(instance, failed.run_id)

    fallback = run(instance, defs, cpu_fallback=True)
    assert fallback.success, failure_text(instance, fallback.run_id)
    assert probes(instance, fallback.run_id)["g0"]["devices"] == ""
    assert leases(instance, fallback.run_id) == []
    monkeypatch.delenv("EXO_CPU_FALLBACK")  # the default: a machine with no GPU runs GPU steps on CPU
    assert run(instance, defs).success


def test_bad_device_list_is_a_clear_error(instance, tmp_path, monkeypatch):
    defs = write_clusters(tmp_path, monkeypatch, mix=cluster_yaml("exotest/gpu-mix", [{"id": "c0", "kind": "cpu"}]))
    monkeypatch.setenv("EXO_GPUS", "0,1,0")
    result = run(instance, defs)
    assert not result.success
    assert "EXO_GPUS: device(s) 0 listed twice" in failure_text(instance, result.run_id)


def test_cpu_steps_respect_max_concurrent_and_gpus_config_wins_over_env(instance, tmp_path, monkeypatch):
    defs = write_clusters(
        tmp_path,
        monkeypatch,
        mix=cluster_yaml(
            "exotest/gpu-mix",
            [
                {"id": "c0", "kind": "cpu", "seconds": 0.3},
                {"id": "c1", "kind": "cpu", "seconds": 0.3},
                {"id": "c2", "kind": "cpu", "seconds": 0.3},
                {"id": "g0", "kind": "gpu", "seconds": 0.2},
                {"id": "g1", "kind": "gpu", "seconds": 0.2},
            ],
        ),
    )
    monkeypatch.setenv("EXO_GPUS", "0,1")
    result = run(instance, defs, max_concurrent=1, gpus=["GPU-7"])
    assert result.success, failure_text(instance, result.run_id)
    seen = probes(instance, result.run_id)
    cpu = [(s, "cpu-slot", seen[s]["start"], seen[s]["end"]) for s in ("c0", "c1", "c2")]
    assert overlapping(cpu) == []  # one CPU step at a time
    assert {seen["g0"]["devices"], seen["g1"]["devices"]} == {"GPU-7"}
    assert overlapping([(s, "GPU-7", seen[s]["start"], seen[s]["end"]) for s in ("g0", "g1")]) == []


def test_a_failing_gpu_step_gives_its_device_back(instance, tmp_path, monkeypatch):
    defs = write_clusters(
        tmp_path,
        monkeypatch,
        mix=cluster_yaml(
            "exotest/gpu-mix",
            [{"id": "bad", "kind": "gpu", "fail": True}, {"id": "good", "kind": "gpu", "seconds": 0.1}],
        ),
    )
    monkeypatch.setenv("EXO_GPUS", "3")
    result = run(instance, defs)
    assert not result.success
    assert "probe asked to fail" in failure_text(instance, result.run_id)
    given = {g["step"]: g for g in leases(instance, result.run_id)}
    assert given["bad"]["devices"] == given["good"]["devices"] == "3"  # the one device was handed on
    assert probes(instance, result.run_id)["good"]["devices"] == "3"
    ok = {short(r.step_key) for r in events_of(instance, result.run_id, dg.DagsterEventType.STEP_SUCCESS)}
    assert ok == {"good"}


def test_device_detection_order(monkeypatch):
    env = {"EXO_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "5"}
    assert gpus.detect(["7"], env).ids == ("7",)
    assert gpus.detect(None, env) == gpus.Devices(("2", "3"), "EXO_GPUS='2,3'")
    assert gpus.detect(None, {"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d"}).ids == ("GPU-1a2b", "GPU-3c4d")
    assert gpus.detect(None, {"EXO_GPUS": " none "}).ids == ()
    assert gpus.detect(None, {"EXO_GPUS": ""}).ids == ()
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: no GPUs, and says why
    found = gpus.detect(None, {})
    assert found.ids == () and "no nvidia-smi" in found.source
    with pytest.raises(gpus.GpuConfigError, match="'0;1' is not a GPU device id"):
        gpus.detect(None, {"EXO_GPUS": "0;1"})
