"""Where ops' small in-between values go (fan-out's chunk list, chunk file names): Dagster's `io_manager`.

Dagster's default pickles them under the instance's local storage folder, which a Celery worker on
another host cannot read. When outputs are remote (EXO_OUTPUTS=s3://...), they go beside them,
under `<outputs>/_intermediates/`; otherwise exactly where Dagster's default puts them.
"""

from __future__ import annotations

import os

from dagster import ConfigurableIOManagerFactory

from exo_dagster import dagster_private as private
from exo_dagster.sdk import paths

INTERMEDIATES_DIR = "_intermediates"


class ExoIntermediatesIOManager(ConfigurableIOManagerFactory):
    """`base_path`: default EXO_OUTPUTS when it is a URL; else the instance's storage folder (Dagster's own default)."""

    base_path: str | None = None

    def create_io_manager(self, context):
        base = self.base_path or os.environ.get("EXO_OUTPUTS") or ""
        if paths.is_url(base) and not base.startswith("file://"):
            return private.PickledObjectFilesystemIOManager(base_dir=base.rstrip("/") + "/" + INTERMEDIATES_DIR)
        return private.PickledObjectFilesystemIOManager(base_dir=self.base_path or context.instance.storage_directory())
