"""exo-dagster: YAML clusters of satellites, compiled into Dagster asset graphs."""

from . import duck
from .compiler import compile_cluster, compile_clusters
from .context import StepContext
from .errors import Diagnostic, Location, SpecError
from .io_manager import ExoParquetIOManager
from .parser import Cluster, load_cluster_file, parse_cluster
from .registry import REGISTRY, Registry, SatelliteConfig, satellite
from .table import StoredTable

__all__ = [
    "Cluster", "Diagnostic", "ExoParquetIOManager", "Location", "REGISTRY", "Registry", "SatelliteConfig",
    "SpecError", "StepContext", "StoredTable", "compile_cluster", "compile_clusters", "load_cluster_file",
    "parse_cluster", "satellite",
]
