"""The template helpers a satellite may need (`${{ ... }}` in a config value), from the spec's template language."""

from exo_dagster.spec.templates import has_template, walk_strings  # noqa: F401
