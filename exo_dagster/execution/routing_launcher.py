"""A run launcher that routes runs to other run launchers by run tags (configured in `dagster.yaml`).

Open-source Dagster has one run launcher per instance; exo clusters with a GPU step carry the run
tag `exo/compute: gpu` (launchers see run tags only, never op tags), so this launcher can send them
to a dedicated launcher (a GPU node pool, a GPU Celery queue...) and everything else to the default:

    run_launcher:
      module: exo_dagster.execution.routing_launcher
      class: RoutingRunLauncher
      config:
        default: {module: dagster, class: DefaultRunLauncher}
        routes:
          - name: gpu
            match: {exo/compute: gpu}
            launcher: {module: dagster_k8s, class: K8sRunLauncher, config: {...}}

The first route whose `match` tags all equal the run's tags wins; otherwise `default`. Launch,
terminate, health checks, resume and debug info are delegated to the run's launcher, and the run
is tagged `exo/launcher: <route name>` so the UI shows where it went. `dagster job execute` runs
in-process and never reaches a launcher; `dagster job launch`, the UI, schedules and sensors do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from dagster import Array, Field, Permissive, Shape, StringSource

from exo_dagster.dagster_private import (
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    DagsterRun,
    LaunchRunContext,
    ResumeRunContext,
    RunLauncher,
    WorkerStatus,
)
from exo_dagster.keys import COMPUTE_TAG, GPU_TAG, LAUNCHER_TAG

DEFAULT_ROUTE = "default"

_LAUNCHER_SCHEMA = Shape(
    {
        "module": Field(StringSource, description="Python module of the run launcher class, e.g. dagster_k8s"),
        "class": Field(StringSource, description="Run launcher class name, e.g. K8sRunLauncher"),
        "config": Field(Permissive(), is_required=False, default_value={}, description="That launcher's own config"),
    }
)


@dataclass(frozen=True)
class Route:
    name: str
    match: Mapping[str, str]
    launcher: RunLauncher

    def matches(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(key) == value for key, value in self.match.items())


def _gpus(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


def _load(spec: Mapping[str, Any], where: str) -> RunLauncher:
    data = ConfigurableClassData(spec["module"], spec["class"], yaml.safe_dump(dict(spec.get("config") or {})))
    try:
        launcher = data.rehydrate(as_type=RunLauncher)
    except Exception as exc:
        raise ValueError(
            f"RoutingRunLauncher: cannot load the run launcher of {where} ({spec['module']}.{spec['class']}): {exc}"
        ) from exc
    return launcher


class RoutingRunLauncher(RunLauncher, ConfigurableClass):
    """Delegates each run to the launcher of the first route its run tags match (see module docs)."""

    def __init__(
        self,
        default: Mapping[str, Any] | None = None,
        routes: list[Mapping[str, Any]] | None = None,
        inst_data: ConfigurableClassData | None = None,
    ):
        self._inst_data = inst_data
        self.default = _load(default or {"module": "dagster", "class": "DefaultRunLauncher"}, "`default`")
        self.routes: list[Route] = []
        names = {DEFAULT_ROUTE}
        for i, raw in enumerate(routes or []):
            name = raw.get("name") or f"route-{i + 1}"
            if name in names:
                raise ValueError(
                    f"RoutingRunLauncher: route name {name!r} is used twice; give each route its own `name`"
                )
            names.add(name)
            if not raw["match"]:
                raise ValueError(f"RoutingRunLauncher: route {name!r} has an empty `match`; it would take every run")
            match = {str(k): str(v) for k, v in raw["match"].items()}
            self.routes.append(Route(name, match, _load(raw["launcher"], f"route {name!r}")))
        super().__init__()

    # -- ConfigurableClass
    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "default": Field(
                _LAUNCHER_SCHEMA,
                is_required=False,
                description="Launcher for runs no route matches (default: dagster.DefaultRunLauncher)",
            ),
            "routes": Field(
                Array(
                    Shape(
                        {
                            "name": Field(str, is_required=False, description=f"Shown in the run tag {LAUNCHER_TAG}"),
                            "match": Field(
                                Permissive(), description="Run tags that must all be equal, e.g. {exo/compute: gpu}"
                            ),
                            "launcher": Field(_LAUNCHER_SCHEMA),
                        }
                    )
                ),
                is_required=False,
                default_value=[],
                description="Checked in order; the first match wins",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> RoutingRunLauncher:
        return cls(default=config_value.get("default"), routes=config_value.get("routes"), inst_data=inst_data)

    # -- routing
    @property
    def launchers(self) -> dict[str, RunLauncher]:
        return {DEFAULT_ROUTE: self.default, **{r.name: r.launcher for r in self.routes}}

    def route_for(self, tags: Mapping[str, str]) -> str:
        return next((r.name for r in self.routes if r.matches(tags)), DEFAULT_ROUTE)

    def launcher_for(self, run: DagsterRun) -> RunLauncher:
        """The launcher that owns a run: the one recorded at launch, else the one its tags pick now."""
        launchers = self.launchers
        name = run.tags.get(LAUNCHER_TAG)
        return launchers[name] if name is not None and name in launchers else launchers[self.route_for(run.tags)]

    def register_instance(self, instance) -> None:
        super().register_instance(instance)
        for launcher in self.launchers.values():
            launcher.register_instance(instance)

    # -- RunLauncher, delegated
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        extra = self.asset_run_tags(run)
        name = self.route_for({**run.tags, **extra})
        self._instance.add_run_tags(run.run_id, {**extra, LAUNCHER_TAG: name})
        if extra:  # the chosen launcher sees the run as tagged now
            context = LaunchRunContext(
                dagster_run=self._instance.get_run_by_id(run.run_id) or run, workspace=context.workspace
            )
        self.launchers[name].launch_run(context)

    def asset_run_tags(self, run: DagsterRun) -> dict[str, str]:
        """`exo/compute: gpu` for an asset-selection run (the UI's Materialize, a backfill) with a GPU step:
        Dagster's implicit asset job carries no cluster's run tags, but its steps carry exo's op tags."""
        if COMPUTE_TAG in run.tags or not run.execution_plan_snapshot_id:
            return {}
        plan = self._instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        wants_gpu = plan is not None and any(_gpus((step.tags or {}).get(GPU_TAG)) for step in plan.steps)
        return {COMPUTE_TAG: "gpu"} if wants_gpu else {}

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None:
            return False
        return self.launcher_for(run).terminate(run_id)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return any(launcher.supports_check_run_worker_health for launcher in self.launchers.values())

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        launcher = self.launcher_for(run)
        if not launcher.supports_check_run_worker_health:
            return CheckRunHealthResult(
                WorkerStatus.UNKNOWN,
                f"{type(launcher).__name__} (route {self.route_for(run.tags)!r}) has no health check",
            )
        return launcher.check_run_worker_health(run)

    def get_run_worker_debug_info(self, run: DagsterRun, include_container_logs: bool | None = True) -> str | None:
        return self.launcher_for(run).get_run_worker_debug_info(run, include_container_logs)

    @property
    def supports_resume_run(self) -> bool:
        return all(launcher.supports_resume_run for launcher in self.launchers.values())

    def resume_run(self, context: ResumeRunContext) -> None:
        self.launcher_for(context.dagster_run).resume_run(context)

    def join(self, timeout: int = 30) -> None:
        for launcher in self.launchers.values():
            launcher.join(timeout)

    def dispose(self) -> None:
        for launcher in self.launchers.values():
            launcher.dispose()

    def __getattr__(self, name: str) -> Any:
        # Executors that read settings off the instance's launcher (dagster-k8s's k8s_job_executor reads
        # image, namespace, dagster_home...) see the default launcher's.
        if name.startswith("_") or name in ("default", "routes"):
            raise AttributeError(name)
        return getattr(self.default, name)
