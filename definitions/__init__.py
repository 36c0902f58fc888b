"""The Dagster code location: every cluster YAML in this folder (and in EXO_CLUSTERS), compiled."""

from pathlib import Path

from exo_dagster.location import definitions_for

defs = definitions_for(Path(__file__).parent)
