"""A plugin that declares a satellite and then fails to import: exo must leave it out, name it, and go on."""

from exo_dagster.sdk import SatelliteConfig, satellite


class NothingConfig(SatelliteConfig):
    pass


@satellite("satellite/broken/half-declared", config=NothingConfig)
def half_declared(ctx, config):
    """Declared before the import fails; a failed plugin contributes nothing."""


raise RuntimeError("exo-broken-satellites needs the ACME_LICENSE environment variable")
