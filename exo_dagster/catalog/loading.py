"""Cluster files checked against the installation's satellite catalog (the default for every entry point)."""

from __future__ import annotations

import os

from exo_dagster import dagster_private
from exo_dagster.catalog.registry import Registry, default_registry
from exo_dagster.spec import parser
from exo_dagster.spec.ir import Cluster


def parse_cluster(text: str | bytes, file: str = "<string>", *, registry: Registry | None = None,
                  strict: bool = False) -> Cluster:
    """Check one cluster file's text (or raw bytes); raises SpecError with every located problem."""
    return parser.parse_cluster(text, file, registry=registry or default_registry(), strict=strict,
                                cron_check=dagster_private.is_valid_cron_string)


def load_cluster_file(path: str | os.PathLike, *, registry: Registry | None = None, strict: bool = False) -> Cluster:
    """Load one cluster file; raises SpecError with every located problem."""
    return parser.load_cluster_file(path, registry=registry or default_registry(), strict=strict,
                                    cron_check=dagster_private.is_valid_cron_string)
