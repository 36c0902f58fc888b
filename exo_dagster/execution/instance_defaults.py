"""The embedded default instance: a DAGSTER_HOME without a dagster.yaml gets exo's, with run monitoring
on and exo's run queue (Dagster's default queued coordinator, plus each cluster's `concurrency:`).

Dagster enforces `dagster/max_runtime` (a cluster's `sla:`) only with run monitoring, which is off
unless dagster.yaml turns it on, and the quickstart starts from an empty DAGSTER_HOME. `exo init` and
`exo run` write this file before they open the home, the code location (definitions/__init__.py, the
ClusterComponent) when it loads; an existing dagster.yaml is never touched (the `deploy/` files all turn
run monitoring on themselves). Dagster gives exo no hook before a process reads dagster.yaml: `dagster dev`,
`dg dev`, the webserver and the daemon read it at start, before they load any code location, so one started
on an empty home keeps Dagster's defaults until restarted. exo says so where it can see it: the load that
writes the file logs `late_warning`, and every run such a process launches logs `stale_instance`'s warning.
exo's own SLA guard (sla.SlaGuard) and run slots hold in the meantime and without any daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER = "# Written by exo-dagster (exo_dagster/execution/instance_defaults.py)"

DEFAULT_DAGSTER_YAML = f"""\
{HEADER} because this DAGSTER_HOME had no dagster.yaml:
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
    return write_instance_config(home)[0]


def write_instance_config(home: str | os.PathLike | None = None) -> tuple[Path | None, bool]:
    """`ensure_instance_config`, and whether this call wrote the file."""
    home = home or os.environ.get("DAGSTER_HOME")
    if not home:
        return None, False
    path = Path(home) / "dagster.yaml"
    if path.exists():
        return path, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:  # "x": two processes starting at once write it once
            out.write(DEFAULT_DAGSTER_YAML)
    except FileExistsError:
        return path, False
    except OSError:
        return None, False  # a read-only home: Dagster's own defaults apply
    return path, True


RESTART = (
    "restart it to pick them up (`dagster dev` / `dg dev`, or `dagster-webserver` and `dagster-daemon run`); "
    "`exo init` writes this file before anything opens the home"
)


def late_warning(path: Path) -> str:
    """What a code location says when it wrote the defaults: processes that opened the home before keep Dagster's."""
    return (
        f"{path}: exo wrote its instance defaults here (run monitoring, which enforces `sla:` from the daemon; "
        f"exo's run queue, which holds `concurrency:`) because DAGSTER_HOME had no dagster.yaml. A Dagster process "
        f"that opened this home before now (a running `dagster dev`, `dg dev`, webserver or daemon) keeps "
        f"Dagster's defaults: {RESTART}"
    )


def stale_instance(instance) -> str | None:
    """A warning when `instance` was opened before exo wrote its dagster.yaml (it runs without run monitoring or
    exo's run queue that the file turns on); None when it runs on the file, or the file is not exo's."""
    import yaml

    root = getattr(instance, "root_directory", None) if instance.is_persistent else None
    path = Path(root) / "dagster.yaml" if root else None
    try:
        text = path.read_text(encoding="utf-8") if path is not None else ""
        config = yaml.safe_load(text) if text.startswith(HEADER) else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    missing = []
    monitoring = config.get("run_monitoring")
    if isinstance(monitoring, dict) and bool(monitoring.get("enabled")) != instance.run_monitoring_enabled:
        missing.append(f"run monitoring {'on' if monitoring.get('enabled') else 'off'}")
    coordinator = config.get("run_coordinator")
    if isinstance(coordinator, dict) and coordinator.get("class"):
        running = type(instance.run_coordinator)
        if (running.__module__, running.__name__) != (coordinator.get("module"), coordinator["class"]):
            missing.append(f"run coordinator {coordinator['class']} (it runs {running.__name__})")
    if not missing:
        return None
    return (
        f"{path}: the webserver or daemon that launched this run opened DAGSTER_HOME before exo wrote this file, "
        f"so it runs without {', '.join(missing)}: {RESTART}"
    )
