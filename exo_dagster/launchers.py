"""Kept so dagster.yaml files that name `module: exo_dagster.launchers` keep working (see execution/launchers.py)."""

from exo_dagster.execution.launchers import RoutingRunLauncher

__all__ = ["RoutingRunLauncher"]
