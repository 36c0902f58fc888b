"""The checked cluster (the IR every later layer reads): a Cluster of ParsedSteps, and where secrets come from."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from exo_dagster.spec.errors import Diagnostic, Location
from exo_dagster.spec.models import ClusterBody, Step


@dataclass(frozen=True)
class SecretSource:
    """Where a secret's value comes from at run time: an env var, or (discouraged) the file itself."""

    kind: str  # "env" | "literal" | "secret"
    name: str  # env var / cluster secret name; for literals, the secret's own name

    literal: str | None = field(default=None, repr=False, compare=False)


@dataclass
class ParsedStep:
    """One satellite step, checked: its satellite, raw config/input and what it references."""

    spec: Step
    index: int
    role: str  # "main" | "logs" | "failure"
    identifier: str
    satellite: Any  # exo_dagster.sdk.SatelliteDef
    config: dict[str, Any]  # without `secrets`
    secrets: dict[str, SecretSource]  # the names this satellite is given -> their source
    references: tuple[str, ...]  # upstream identifiers read (templates, table names)
    per_row_source: str | None
    location: Location
    # where each config/input key is written ("config.path", "input.paths", "config.options.x"), and each
    # template inside them ((key, template text)): run-time errors point there, not at the step's first line
    key_locations: dict[str, Location] = field(default_factory=dict)
    template_locations: dict[tuple[str, str], Location] = field(default_factory=dict)

    @property
    def asset_name(self) -> str:
        return asset_name(self.identifier)


@dataclass
class Cluster:
    """A checked cluster file, ready for the compiler."""

    file: str
    spec: ClusterBody
    steps: list[ParsedStep]
    logs_steps: list[ParsedStep]
    failure_steps: list[ParsedStep]
    secrets: dict[str, SecretSource]
    warnings: list[Diagnostic]
    location: Location
    identifier_location: Location | None = None  # where `identifier:` is (name clashes are reported there)

    @property
    def job_name(self) -> str:
        return asset_name(f"{self.spec.project}__{self.spec.short_name}")

    @property
    def key_prefix(self) -> list[str]:
        """The asset key prefix of the cluster's steps: [project, name] (`exospherehost/orders_report/files`).
        The group, job and op names keep `<project>__<name>` (Dagster names are one word); outputs are
        stored under `<outputs>/<project>__<name>/` (the IO manager joins the prefix with `__`)."""
        return [asset_name(self.spec.project), asset_name(self.spec.short_name)]

    def asset_key_path(self, identifier: str) -> list[str]:
        """The asset key (as a path) of the step `identifier`."""
        return [*self.key_prefix, asset_name(identifier)]

    @property
    def source_path(self) -> str:
        """Absolute path of the cluster file (what the UI links to)."""
        return os.path.abspath(self.file)

    @property
    def base_dir(self) -> str:
        return os.path.dirname(self.source_path)

    def step(self, identifier: str) -> ParsedStep:
        return next(s for s in self.steps if s.identifier == identifier)


def asset_name(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


def op_name(cluster: Cluster, step: ParsedStep) -> str:
    """The Dagster op (and step key) of a step: its identifier first, then the cluster's job name, e.g.
    `files__exospherehost__orders_report`. Op names must be unique in a code location, so the job name
    stays in; the identifier leads so the part the run log and Gantt views show names the step."""
    return f"{step.asset_name}__{cluster.job_name}"


def step_of(cluster: Cluster, step_key: str | None) -> ParsedStep | None:
    """The cluster step a Dagster step key belongs to: the asset's op (`op_name`), or an op inside a
    fanned-out step's graph (`files__acme__x.files__acme__x__chunk[c3]`)."""
    if not step_key:
        return None
    head = step_key.split(".", 1)[0].split("[", 1)[0]
    return next((s for s in cluster.steps if head == op_name(cluster, s)), None)
