"""Run monitoring (which enforces `dagster/max_runtime`, a cluster's `sla:`) and exo's run queue (each
cluster's `concurrency:`) are on in the embedded default and in every deploy/ file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from exo_dagster.execution.instance_defaults import DEFAULT_DAGSTER_YAML, ensure_instance_config
from exo_dagster.execution.run_queue import ExoRunCoordinator

REPO = Path(__file__).resolve().parents[3]


def test_an_empty_home_gets_the_default_and_dagster_loads_it_with_run_monitoring(tmp_path):
    written = ensure_instance_config(tmp_path / "home")
    assert written == tmp_path / "home" / "dagster.yaml" and written.read_text() == DEFAULT_DAGSTER_YAML
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["enabled"] is True
        assert isinstance(instance.run_coordinator, ExoRunCoordinator)  # queued, with each cluster's `concurrency:`


def test_an_existing_dagster_yaml_is_never_touched(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert ensure_instance_config(tmp_path) == tmp_path / "dagster.yaml"
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_no_home_no_file(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert ensure_instance_config() is None


@pytest.mark.parametrize("path", sorted((REPO / "deploy").glob("*/dagster.yaml")), ids=lambda p: p.parent.name)
def test_every_deploy_file_turns_run_monitoring_on_and_queues_with_cluster_limits(path):
    config = yaml.safe_load(path.read_text())
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_coordinator"] == {"module": "exo_dagster.execution.run_queue", "class": "ExoRunCoordinator"}
