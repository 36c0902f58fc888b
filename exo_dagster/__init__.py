"""exo-dagster: YAML clusters of satellites, compiled into Dagster asset graphs.

The layers, each importing only those before it:
  keys.py, errors.py  leaves every layer and satellite may import: every exo tag/metadata key; the exception root
  sdk/       what satellite authors import: SatelliteConfig, @satellite, StepContext, StoredTable, helpers; no Dagster
  spec/      YAML to a checked IR (Cluster), located errors; no Dagster
  dagster_private.py  every private Dagster name exo uses
  catalog/   the satellite registry, entry-point discovery, configured satellites
  storage/   the Parquet IO manager and the DuckDB catalog of outputs
  runtime/   one step's compute: templates filled, secrets resolved and masked, timeouts
  execution/ executors (local GPU-aware, run guard), the routing run launcher, tags, the Dagster home
  compile/   a Cluster to Dagster definitions: assets, fan-out, retry, SLA, triggers, failure/logs sections
  location.py, cli.py: a code location of many cluster files; the `exo` command
  component.py: ClusterComponent, the same location as a Dagster component (`defs.yaml` in a `dg` project)
  project_init.py: `exo init DIR`, a new `dg` project whose location is its own clusters

Names below are loaded on first use, so `import exo_dagster.sdk` does not load the compiler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time each name loads on first use through __getattr__
    from exo_dagster.catalog.loading import load_cluster_file, parse_cluster
    from exo_dagster.catalog.registry import REGISTRY, Registry, default_registry
    from exo_dagster.compile.compiler import compile_cluster, compile_clusters
    from exo_dagster.component import ClusterComponent
    from exo_dagster.sdk.context import StepContext
    from exo_dagster.sdk.satellite import SatelliteConfig, satellite
    from exo_dagster.sdk.table import StoredTable
    from exo_dagster.spec.errors import Diagnostic, Location, SpecError
    from exo_dagster.spec.ir import Cluster
    from exo_dagster.storage.io_manager import ExoParquetIOManager

_EXPORTS = {
    "Cluster": "exo_dagster.spec.ir",
    "Diagnostic": "exo_dagster.spec.errors",
    "Location": "exo_dagster.spec.errors",
    "SpecError": "exo_dagster.spec.errors",
    "SatelliteConfig": "exo_dagster.sdk.satellite",
    "satellite": "exo_dagster.sdk.satellite",
    "StepContext": "exo_dagster.sdk.context",
    "StoredTable": "exo_dagster.sdk.table",
    "Registry": "exo_dagster.catalog.registry",
    "REGISTRY": "exo_dagster.catalog.registry",
    "default_registry": "exo_dagster.catalog.registry",
    "parse_cluster": "exo_dagster.catalog.loading",
    "load_cluster_file": "exo_dagster.catalog.loading",
    "ExoParquetIOManager": "exo_dagster.storage.io_manager",
    "compile_cluster": "exo_dagster.compile.compiler",
    "compile_clusters": "exo_dagster.compile.compiler",
    "ClusterComponent": "exo_dagster.component",
}

# a literal, so type checkers read it (tests/exo_dagster/test_package_exports.py keeps it and the
# TYPE_CHECKING imports equal to _EXPORTS)
__all__ = [
    "REGISTRY",
    "Cluster",
    "ClusterComponent",
    "Diagnostic",
    "ExoParquetIOManager",
    "Location",
    "Registry",
    "SatelliteConfig",
    "SpecError",
    "StepContext",
    "StoredTable",
    "compile_cluster",
    "compile_clusters",
    "default_registry",
    "load_cluster_file",
    "parse_cluster",
    "satellite",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'exo_dagster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
