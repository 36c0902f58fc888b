"""Kept so dagster.yaml files that name `module: exo_dagster.launchers` keep working (execution/routing_launcher.py)."""

from exo_dagster.execution.routing_launcher import RoutingRunLauncher

__all__ = ["RoutingRunLauncher"]
