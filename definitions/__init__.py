"""The Dagster code location: every cluster YAML in this folder (and in EXO_CLUSTERS), compiled."""

from pathlib import Path

from exo_dagster.execution.instance_home import prepare
from exo_dagster.location import definitions_for

prepare(from_location=True)  # an empty DAGSTER_HOME gets exo's dagster.yaml (run monitoring on), set up once
defs = definitions_for(Path(__file__).parent)
