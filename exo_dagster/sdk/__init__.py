"""What a satellite author imports: the Config base, `@satellite`, the step context, stored tables, and helpers.

    from exo_dagster.sdk import SatelliteConfig, StepContext, satellite

Helper modules (import them by name): `paths`, `allowed_paths`, `duck`, `sql_text`, `embedded_languages`,
`file_ops`, `row_map`, `row_cache`, `masking`, `step_errors`, `temp_files`, `target_lock`,
`storage_options`, and one of each of these, used everywhere: `retrying` (retry with backoff),
`atomic_write` (write beside, then rename), `hashing` (SHA-256), `tls` (the TLS context).
Nothing here imports the compiler, an executor or another satellite.
"""

from exo_dagster.sdk.context import StepContext
from exo_dagster.sdk.durations import duration_seconds
from exo_dagster.sdk.satellite import DECLARED, SatelliteConfig, SatelliteDef, satellite
from exo_dagster.sdk.step_errors import PermanentError, TransientError
from exo_dagster.sdk.table import StoredTable

__all__ = [
    "DECLARED",
    "PermanentError",
    "SatelliteConfig",
    "SatelliteDef",
    "StepContext",
    "StoredTable",
    "TransientError",
    "duration_seconds",
    "satellite",
]
