"""Cluster files checked against the installation's satellite catalog (the default for every entry point).

Without an explicit `registry`, the catalog is the installation's (entry points and `@satellite`s)
plus the configured satellites (`*.satellite.yaml`) of EXO_SATELLITE_PATH and of the cluster file's
own folder (exo_dagster.catalog.presets).
"""

from __future__ import annotations

import os

from exo_dagster import dagster_private
from exo_dagster.catalog import presets
from exo_dagster.catalog.registry import Registry, default_registry
from exo_dagster.spec import parser
from exo_dagster.spec.ir import Cluster


def registry_for(file: str | os.PathLike, registry: Registry | None = None) -> Registry:
    """`registry`, else the default catalog with the presets a cluster file at `file` sees: those under
    EXO_SATELLITE_PATH and those next to it (`<string>`, a text without a file, sees only the former)."""
    if registry is not None:
        return registry
    file = str(file)
    folder = os.path.dirname(os.path.abspath(file)) if os.path.dirname(file) or os.path.isfile(file) else None
    files = presets.find_preset_files(presets.env_folders()) + (presets.files_in(folder) if folder else [])
    return presets.load_presets(dict.fromkeys(files), default_registry()).registry


def parse_cluster(
    text: str | bytes, file: str = "<string>", *, registry: Registry | None = None, strict: bool = False
) -> Cluster:
    """Check one cluster file's text (or raw bytes); raises SpecError with every located problem."""
    return parser.parse_cluster(
        text,
        file,
        registry=registry_for(file, registry),
        strict=strict,
        cron_check=dagster_private.is_valid_cron_string,
    )


def load_cluster_file(path: str | os.PathLike, *, registry: Registry | None = None, strict: bool = False) -> Cluster:
    """Load one cluster file; raises SpecError with every located problem."""
    return parser.load_cluster_file(
        path, registry=registry_for(path, registry), strict=strict, cron_check=dagster_private.is_valid_cron_string
    )
