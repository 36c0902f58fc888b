"""The Dagster code location: every cluster YAML in this folder (and in EXO_CLUSTERS), compiled."""

from pathlib import Path

from exo_dagster.instance_home import initialise
from exo_dagster.location import definitions_for

initialise()  # a fresh DAGSTER_HOME is set up once, under a file lock (simultaneous first runs)
defs = definitions_for(Path(__file__).parent)
