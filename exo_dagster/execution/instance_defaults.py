"""The embedded default instance: a DAGSTER_HOME without a dagster.yaml gets exo's, with run monitoring
on and exo's run queue (Dagster's default queued coordinator, plus each cluster's `concurrency:`).

Dagster enforces `dagster/max_runtime` (a cluster's `sla:`) only with run monitoring, which is off
unless dagster.yaml turns it on, and the quickstart starts from an empty DAGSTER_HOME. The code
location (definitions/__init__.py) and `exo run` write this file there when none exists; an existing
dagster.yaml is never touched (the `deploy/` files all turn run monitoring on themselves). The daemon
reads dagster.yaml when it starts, so a `dagster dev` started on an empty home enforces through the
daemon from its next start; exo's own SLA guard (sla.SlaGuard) holds in the meantime and without any
daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DAGSTER_YAML = """\
# Written by exo-dagster (exo_dagster/execution/instance_defaults.py) because this DAGSTER_HOME had no dagster.yaml:
# the embedded default (SQLite storage in this folder). Edit freely; exo never overwrites it.
run_monitoring:
  enabled: true               # fail runs past their `dagster/max_runtime` (a cluster's `sla:`), detect dead run workers
  poll_interval_seconds: 30
run_coordinator:              # Dagster's run queue, plus one limit per cluster with `concurrency: N`
  module: exo_dagster.execution.run_queue
  class: ExoRunCoordinator
"""


def ensure_instance_config(home: str | os.PathLike | None = None) -> Path | None:
    """Write the default dagster.yaml into DAGSTER_HOME when it has none; return its path (None without a home)."""
    home = home or os.environ.get("DAGSTER_HOME")
    if not home:
        return None
    path = Path(home) / "dagster.yaml"
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:  # "x": two processes starting at once write it once
            out.write(DEFAULT_DAGSTER_YAML)
    except FileExistsError:
        pass
    except OSError:
        return None  # a read-only home: Dagster's own defaults apply
    return path
