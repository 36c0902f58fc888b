"""Where the embedded default keeps things: one data folder, from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> str:
    """EXO_DATA_DIR, else $DAGSTER_HOME/exo, else ./.exo (absolute, so every process agrees)."""
    if os.environ.get("EXO_DATA_DIR"):
        return os.environ["EXO_DATA_DIR"]
    if os.environ.get("DAGSTER_HOME"):
        return str(Path(os.environ["DAGSTER_HOME"]) / "exo")
    return str(Path(".exo").resolve())


def is_url(path: str) -> bool:
    return "://" in path


def resolve(path: str, base: str) -> str:
    """A relative path resolved against `base`; URLs and absolute paths are kept."""
    if is_url(path) or os.path.isabs(path):
        return path
    return str(Path(base) / os.path.expanduser(path))
