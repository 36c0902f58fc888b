"""The code location: compile every cluster file in a folder plus those named by EXO_CLUSTERS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import dagster as dg

from .compiler import compile_clusters
from .errors import SpecError
from .parser import Cluster, load_cluster_file

CLUSTER_SUFFIXES = (".yaml", ".yml")


def cluster_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Cluster YAML files under the given files/folders (recursively), sorted, de-duplicated."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.suffix in CLUSTER_SUFFIXES and file.is_file() and _looks_like_cluster(file):
                    found[file.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            raise FileNotFoundError(f"cluster path `{path}` does not exist (check the command line or EXO_CLUSTERS)")
    return list(found)


def _looks_like_cluster(file: Path) -> bool:
    """Only files with a top-level `cluster:` key; other YAML (workspace, data) is not ours."""
    try:
        head = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("cluster:") for line in head.splitlines())


def load_clusters(paths: Iterable[str | os.PathLike], *, strict: bool = False) -> list[Cluster]:
    """Load every cluster file; all files' errors together in one SpecError."""
    clusters, diagnostics, sources = [], [], {}
    for file in cluster_files(paths):
        try:
            clusters.append(load_cluster_file(file, strict=strict))
        except SpecError as exc:
            diagnostics.extend(exc.diagnostics)
            sources.update(exc.sources)
    if any(d.severity == "error" for d in diagnostics):
        raise SpecError(diagnostics, sources)
    seen: dict[str, str] = {}
    for cluster in clusters:
        if cluster.job_name in seen:
            raise SpecError([*cluster.warnings, _duplicate(cluster, seen[cluster.job_name])])
        seen[cluster.job_name] = cluster.file
    return clusters


def _duplicate(cluster: Cluster, other: str):
    from .errors import Diagnostic

    return Diagnostic(cluster.location, f"cluster `{cluster.spec.identifier}` is also defined in {other}",
                      "give each cluster its own `identifier:`")


def env_paths() -> list[str]:
    return [p for p in os.environ.get("EXO_CLUSTERS", "").split(os.pathsep) if p.strip()]


def definitions_for(folder: str | os.PathLike) -> dg.Definitions:
    """What `definitions/` exposes: its own clusters plus EXO_CLUSTERS, compiled."""
    return compile_clusters(load_clusters([folder, *env_paths()]))
