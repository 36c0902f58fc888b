"""Cluster files to a checked IR: YAML with locations, the spec models, templates, the checker. No Dagster import."""
