"""The Dagster code location: every cluster YAML in this folder (and in EXO_CLUSTERS), compiled."""

from pathlib import Path

from exo_dagster.instance_defaults import ensure_instance_config
from exo_dagster.location import definitions_for

ensure_instance_config()  # an empty DAGSTER_HOME gets the embedded default (run monitoring on)
defs = definitions_for(Path(__file__).parent)
