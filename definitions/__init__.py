"""The Dagster code location: every cluster YAML in this folder (and in EXO_CLUSTERS), compiled."""

from pathlib import Path

from exo_dagster.instance_defaults import ensure_instance_config
from exo_dagster.instance_home import initialise
from exo_dagster.location import definitions_for

ensure_instance_config()  # an empty DAGSTER_HOME gets the embedded default dagster.yaml (run monitoring on)
initialise()  # a fresh DAGSTER_HOME is set up once, under a file lock (simultaneous first runs)
defs = definitions_for(Path(__file__).parent)
