"""The code location: every cluster file in a folder plus those named by EXO_CLUSTERS, compiled,
with each file isolated from the others.

One location holds clusters from many teams. A file that cannot load (bad YAML, a name another
cluster already uses, a value Dagster cannot take) must not take the healthy clusters' jobs,
schedules and sensors down with it, as Airflow's "Broken DAG" list does not. So the location:

1. loads each file on its own (located errors per file);
2. drops a cluster whose identifier, or any name it generates (jobs, ops, graphs, sensors,
   schedules, asset keys), an earlier file already uses;
3. compiles each healthy cluster, merges them, and builds and resolves the whole repository once;
   only if that fails does it resolve cluster by cluster to find and drop the culprits;
4. shows every broken file as an asset in the group `exo_errors` (its description is the located
   error; materializing it fails with the same text) and logs a WARNING.

Configured satellites (`*.satellite.yaml` under these paths and EXO_SATELLITE_PATH, see
exo_dagster/catalog/presets.py) are loaded first, for every cluster of the location; a broken one is
isolated the same way (an `exo_errors` asset, and clusters using its id get a located error naming it).

`EXO_STRICT_LOAD=1` keeps the all-or-nothing behaviour for deploy gates: any broken file fails the
location with every located error. Dagster's own gates (`dagster definitions validate`, `dg check defs`,
which set DAGSTER_IS_DEFS_VALIDATION_CLI=1) get the same. `exo validate` runs exactly this build, so it succeeds exactly
when the location loads every given file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from exo_dagster import keys
from exo_dagster.catalog import presets
from exo_dagster.catalog.loading import load_cluster_file, parse_cluster
from exo_dagster.catalog.registry import default_registry
from exo_dagster.compile.compiled import CompiledCluster
from exo_dagster.compile.compiler import compiled_cluster
from exo_dagster.compile.merging import merged_definitions
from exo_dagster.errors import ExoBug
from exo_dagster.sdk.hashing import short_hash
from exo_dagster.sdk.satellite import SatelliteDef
from exo_dagster.sdk.sql_text import sql_name
from exo_dagster.spec.errors import Diagnostic, Location, SpecError
from exo_dagster.spec.ir import Cluster
from exo_dagster.spec.untrusted_text import markdown_code, markdown_text, terminal

CLUSTER_SUFFIXES = (".yaml", ".yml")
STRICT_ENV = "EXO_STRICT_LOAD"
VALIDATION_ENV = "DAGSTER_IS_DEFS_VALIDATION_CLI"  # set by `dagster definitions validate` and `dg check defs`
ERRORS_GROUP = "exo_errors"
log = logging.getLogger("exo_dagster.location")


def _find(paths: Iterable[str | os.PathLike], missing: list[Diagnostic]) -> list[Path]:
    """Cluster YAML files under the given files/folders (recursively), sorted, de-duplicated; a path
    that does not exist is added to `missing`."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if (
                    file.suffix in CLUSTER_SUFFIXES
                    and file.is_file()
                    and not presets.is_preset_file(file.name)
                    and _looks_like_cluster(file)
                ):
                    found[file.resolve()] = None
        elif path.is_file():
            if not presets.is_preset_file(path.name):  # a configured satellite, loaded as one (build_location)
                found[path.resolve()] = None
        else:
            missing.append(
                Diagnostic(
                    Location(str(path), 1, 1),
                    f"cluster path `{path}` does not exist",
                    "check the command line or EXO_CLUSTERS",
                )
            )
    return list(found)


def _looks_like_cluster(file: Path) -> bool:
    """Only files with a top-level `cluster:` key; other YAML (workspace, data) is not ours."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return False
    return any(line.startswith(b"cluster:") for line in head.splitlines())


@dataclass
class LocationBuild:
    """What a location made of some cluster files holds: the healthy clusters compiled, their Definitions
    (resolved), and each broken file's located errors."""

    compiled: list[CompiledCluster]
    definitions: dg.Definitions
    broken: dict[str, SpecError] = field(default_factory=dict)  # cluster and configured-satellite files
    satellites: dict[str, SatelliteDef] = field(default_factory=dict)  # configured-satellite file -> its satellite
    warnings: list[str] = field(default_factory=list)  # plugins that did not load, ids two distributions declare

    @property
    def clusters(self) -> list[Cluster]:
        return [c.cluster for c in self.compiled]

    @property
    def ok(self) -> bool:
        return not self.broken

    def error(self) -> SpecError:
        diagnostics, sources = [], {}
        for exc in self.broken.values():
            diagnostics += exc.diagnostics
            sources.update(exc.sources)
        return SpecError(diagnostics, sources)


def build_location(
    paths: Iterable[str | os.PathLike],
    *,
    strict: bool = False,
    executor: str | None = None,
    sources: Mapping[str, str | bytes] | None = None,
) -> LocationBuild:
    """Load, check, compile and resolve the clusters in `paths`, each file isolated (see module docstring).
    `strict` is `exo validate --strict` (literal secrets are errors), not EXO_STRICT_LOAD.
    `sources`: clusters given as text, by the file they are located in (the Dagster component's inline
    `cluster:`, located in its defs.yaml); they come after the files of `paths` and see the presets next to
    that file, as a cluster file does."""
    paths = list(paths)
    sources = dict(sources or {})
    missing: list[Diagnostic] = []
    files = _find(paths, missing)
    for folder in presets.env_folders():
        if not Path(folder).is_dir():
            missing.append(
                Diagnostic(
                    Location(folder, 1, 1), f"satellite folder `{folder}` does not exist", f"check {presets.PATH_ENV}"
                )
            )
    broken: dict[str, SpecError] = {d.location.file: SpecError([d]) for d in missing}
    base = default_registry()
    # configured satellites (*.satellite.yaml) of EXO_SATELLITE_PATH and these paths, for every cluster here
    catalog = presets.presets_for([*paths, *(file for file in sources if Path(file).is_file())], base)
    broken.update(catalog.broken)
    clusters: list[Cluster] = []
    for file in files:
        try:
            clusters.append(load_cluster_file(file, strict=strict, registry=catalog.registry))
        except SpecError as exc:
            broken[str(file)] = exc
    for file, text in sources.items():
        try:
            clusters.append(parse_cluster(text, file, strict=strict, registry=catalog.registry))
        except SpecError as exc:
            broken[file] = exc
    parts: list[CompiledCluster] = []
    owners: dict[tuple[str, str], Cluster] = {}
    for cluster in clusters:
        try:
            compiled = compiled_cluster(cluster, executor=executor)
        except Exception as exc:  # a value Dagster refuses: located at the cluster, never a traceback
            broken[cluster.file] = _cluster_error(
                cluster,
                f"cluster/{cluster.spec.identifier} cannot be compiled: {_short(exc)}",
                "fix the value named above; `exo validate` reports the same",
            )
            continue
        clash = _claim(owners, cluster, compiled.definitions)
        if clash:
            broken[cluster.file] = clash
            continue
        parts.append(compiled)
    definitions = _resolve(parts, broken)
    return LocationBuild(
        compiled=[c for c in parts if c.cluster.file not in broken],
        definitions=definitions,
        broken=broken,
        satellites=catalog.loaded,
        warnings=base.problems(load=False),
    )  # what loaded: unused plugins are not imported


def _claim(owners: dict[tuple[str, str], Cluster], cluster: Cluster, defs: dg.Definitions) -> SpecError | None:
    """Register every name `defs` defines for `cluster`; a located error if an earlier file holds one."""
    names = sorted(
        generated_names(defs)
        | {("cluster", cluster.spec.identifier.lower()), ("catalog schema", sql_name(cluster.spec.short_name).lower())},
        key=lambda name: (_CLAIM_ORDER.index(name[0]), name[1]),
    )  # the plainest clash is reported
    for name in names:
        other = owners.get(name)
        if other is not None and other is not cluster:
            kind, value = name
            what = (
                f"cluster `{cluster.spec.identifier}`"
                if kind == "cluster"
                else f"the DuckDB catalog schema `{value}` (from the name after `/`)"
                if kind == "catalog schema"
                else f"{kind} `{value}`"
            )
            return _cluster_error(
                cluster,
                f"{what} is also defined by cluster/{other.spec.identifier} in {other.file}",
                "give each cluster its own `identifier:` (every job, asset, sensor and schedule name derives from it)",
            )
    for name in names:
        owners[name] = cluster
    return None


_CLAIM_ORDER = ("cluster", "catalog schema", "job", "schedule", "sensor", "asset", "op")


def generated_names(defs: dg.Definitions) -> set[tuple[str, str]]:
    """(kind, name) of everything in `defs` that must be unique in a code location."""
    names: set[tuple[str, str]] = set()
    for asset in defs.assets or []:
        if not isinstance(asset, dg.AssetsDefinition):  # specs, source and cacheable assets have no ops to name
            raise ExoBug(f"a cluster compiles to AssetsDefinitions, not {type(asset).__name__}")
        for key in asset.keys:
            names.add(("asset", key.to_user_string().lower()))
        names.update(("op", node.name) for node in _node_defs(asset.node_def))
    for job in defs.jobs or []:
        names.add(("job", job.name))
        if isinstance(job, dg.JobDefinition):
            names.update(("op", node.name) for node in _node_defs(job.graph))
    names.update(("schedule", s.name) for s in defs.schedules or [])
    names.update(("sensor", s.name) for s in defs.sensors or [])
    return names


def _node_defs(node_def) -> list:
    out = [node_def]
    if isinstance(node_def, dg.GraphDefinition):
        for inner in node_def.node_defs:
            out += _node_defs(inner)
    return out


def _resolve(parts: list[CompiledCluster], broken: dict[str, SpecError]) -> dg.Definitions:
    """All parts merged with the error assets of `broken`, and resolved once. Only if that fails, each
    part alone, to add the ones that fail to `broken` and resolve the rest."""
    try:
        return _resolved(_location_defs(parts, broken))
    except Exception:
        pass
    good = []
    for part in parts:
        cluster = part.cluster
        try:
            _resolved(merged_definitions([part]))
            good.append(part)
        except Exception as exc:
            broken[cluster.file] = _cluster_error(
                cluster,
                f"cluster/{cluster.spec.identifier} does not load in Dagster: {_short(exc)}",
                "fix the value named above; `exo validate` reports the same",
            )
    try:
        return _resolved(_location_defs(good, broken))
    except Exception as exc:  # only a clash between clusters that each load alone: drop them all, loudly
        for part in good:
            broken[part.cluster.file] = _cluster_error(
                part.cluster,
                f"cluster/{part.cluster.spec.identifier} clashes with another cluster in Dagster: {_short(exc)}",
                "rename one of the clusters",
            )
        return _resolved(_location_defs([], broken))


def _location_defs(parts: list[CompiledCluster], broken: dict[str, SpecError]) -> dg.Definitions:
    return merged_definitions(parts, more=[error_definitions(broken)] if broken else [])


def _resolved(defs: dg.Definitions) -> dg.Definitions:
    """`defs` after Dagster has built its repository and resolved every job (what loading a location does)."""
    repository = defs.get_repository_def()
    for job_name in repository.job_names:
        repository.get_job(job_name)
    return defs


def _cluster_error(cluster: Cluster, message: str, hint: str) -> SpecError:
    lines = source_lines(cluster.file)
    return SpecError(
        [Diagnostic(cluster.identifier_location or cluster.location, message, hint)], {cluster.file: lines}
    )


def source_lines(file: str) -> list[str]:
    try:
        return Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 400 else text[:400] + "..."


# -- broken files, where a Dagster user looks ---------------------------------------------------


def error_asset_name(file: str) -> str:
    """ASCII letters, digits and `_` only (Dagster's rule for names): `café.yaml` must not fail the whole location."""
    stem = "".join(c if c.isascii() and c.isalnum() else "_" for c in Path(file).stem).strip("_")[:40] or "file"
    return f"{stem}_{short_hash(file, 8)}"


def error_definitions(broken: dict[str, SpecError]) -> dg.Definitions:
    """One asset per broken file in group `exo_errors`: description = the located error, and
    materializing it fails with the same text (so a run shows it too)."""
    return dg.Definitions(assets=[_error_asset(file, exc) for file, exc in sorted(broken.items())])


def _error_asset(file: str, exc: SpecError) -> dg.AssetsDefinition:
    """The file's text reaches the UI only as text: the headline escaped, the report in a fence it cannot close."""
    report = exc.report()
    first = exc.errors[0] if exc.errors else None
    headline = f"{first.location}: {first.message}" if first else file  # what the catalog list shows
    headline = markdown_text(terminal(headline, newlines=False))

    what = (
        "its jobs, schedules and sensors are"
        if not presets.is_preset_file(file)
        else "the satellite it declares is unknown to every cluster, and the clusters using it are"
    )

    @dg.asset(
        key=dg.AssetKey([ERRORS_GROUP, error_asset_name(file)]),
        group_name=ERRORS_GROUP,
        description=f"Broken {_kind(file)}: {headline}\n\nThis file did not load, so {what} "
        f"missing from the code location until it is fixed (the other clusters are "
        f"loaded).\n\n{markdown_code(report)}",
        metadata={
            keys.FILE: terminal(file, newlines=False),
            keys.ERROR: terminal(first.location if first else file, newlines=False),
            keys.REPORT: dg.MetadataValue.md(markdown_code(report)),
        },
        kinds={"yaml"},
        tags={keys.BROKEN_TAG: ""},
    )
    def _broken(context):
        raise dg.Failure(
            description=f"{_kind(file)} {terminal(file, newlines=False)} did not load:\n{report}", allow_retries=False
        )

    return _broken


def _kind(file: str) -> str:
    return "configured-satellite file" if presets.is_preset_file(file) else "cluster file"


def env_paths() -> list[str]:
    return [p for p in os.environ.get("EXO_CLUSTERS", "").split(os.pathsep) if p.strip()]


def definitions_for(folder: str | os.PathLike) -> dg.Definitions:
    """What `definitions/` exposes: its own clusters plus EXO_CLUSTERS, compiled, broken files isolated."""
    return location_definitions([folder, *env_paths()])


def strict_load() -> bool:
    """All or nothing: EXO_STRICT_LOAD=1, or a deploy gate (`dagster definitions validate`, `dg check defs`)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes") for name in (STRICT_ENV, VALIDATION_ENV)
    )


def checked_build(
    paths: Iterable[str | os.PathLike], *, sources: Mapping[str, str | bytes] | None = None
) -> LocationBuild:
    """build_location, with its broken files logged, or, under strict_load(), a SpecError with every file's
    located errors."""
    built = build_location(paths, sources=sources)
    if built.broken:
        if strict_load():
            raise built.error()
        for file, exc in sorted(built.broken.items()):
            log.warning(
                "%s %s did not load; the other clusters are loaded. %s",
                _kind(file),
                terminal(file, newlines=False),
                exc.report(),
            )
    for problem in built.warnings:
        log.warning("satellite catalog: %s", terminal(problem))
    return built


def location_definitions(
    paths: Iterable[str | os.PathLike], *, sources: Mapping[str, str | bytes] | None = None
) -> dg.Definitions:
    """The Definitions of a location made of `paths` (and `sources`, see build_location): broken files
    isolated and logged, or, under strict_load(), a SpecError with every file's located errors."""
    return checked_build(paths, sources=sources).definitions
