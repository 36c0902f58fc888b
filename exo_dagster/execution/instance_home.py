"""A fresh DAGSTER_HOME is set up once, under a file lock, so simultaneous first runs cannot break it.

Dagster's SQLite storages check "is there an alembic revision?" and then stamp one; two processes doing
that at the same moment both stamp, and every later process fails with "alembic_version has more than one
head". `initialise()` creates the instance storage while holding `$DAGSTER_HOME/.exo-init.lock`, and
first repairs such a doubled stamp if an earlier race left one: processes that create
their instance before exo code runs (`dagster job execute`) heal the home as soon as they load the code
location, so the damage never outlives the race. After one verified set-up a marker file makes every later
call a single `stat`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from filelock import FileLock

MARKER = ".exo-initialised"
LOCK = ".exo-init.lock"
# the SQLite files Dagster's default instance stamps when it is created
STAMPED = ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
LOCK_TIMEOUT_S = 300


def prepare(home: str | os.PathLike | None = None, *, from_location: bool = False) -> None:
    """What every exo entry point (`exo init`, `exo run`, the code location) does to DAGSTER_HOME: the embedded
    default dagster.yaml when there is none, then the storage set up once. `from_location`: a code location
    loads after its Dagster process opened the home, so a file written now is a loud WARNING (instance_defaults)."""
    from exo_dagster.execution.instance_defaults import late_warning, write_instance_config

    path, written = write_instance_config(home)
    if path is not None and written and from_location:
        logging.getLogger("exo_dagster.instance").warning(late_warning(path))
    initialise(home)


def initialise(home: str | os.PathLike | None = None) -> bool:
    """Set up the instance storage of `home` (default: $DAGSTER_HOME) once; True when this call did work."""
    home = home or os.environ.get("DAGSTER_HOME")
    if not home or not os.path.isdir(home) or os.path.exists(os.path.join(home, MARKER)):
        return False
    if os.path.exists(os.path.join(home, "dagster.yaml")) and _configured_elsewhere(home):
        return False
    try:
        with FileLock(os.path.join(home, LOCK), timeout=LOCK_TIMEOUT_S):
            if os.path.exists(os.path.join(home, MARKER)):
                return False
            repair(home)
            _create_storages(str(home))
            if all(_single_head(Path(home) / name) for name in STAMPED if (Path(home) / name).exists()):
                Path(home, MARKER).write_text("instance storage set up by exo_dagster.execution.instance_home\n")
            return True
    except OSError:
        return False  # a read-only or foreign home: Dagster reports what is wrong with it itself


def repair(home: str | os.PathLike) -> list[str]:
    """Drop the extra alembic stamps a set-up race left: identical rows, or an older revision stamped next to
    the head (one racer saw the other's fresh tables and stamped the last pre-2.0 revision). The tables were
    created from the current schema, so the head is right."""
    fixed = []
    head = None
    for name in STAMPED:
        path = Path(home) / name
        if not path.exists():
            continue
        with sqlite3.connect(path, timeout=60) as con:
            try:
                rows = [r[0] for r in con.execute("select version_num from alembic_version")]
            except sqlite3.OperationalError:
                continue  # not stamped yet
            if len(rows) < 2:
                continue
            head = head or _alembic_head()
            keep = head if head in rows else (rows[0] if len(set(rows)) == 1 else None)
            if keep is None:
                continue
            con.execute("delete from alembic_version where version_num != ?", (keep,))
            con.execute("delete from alembic_version where rowid not in (select min(rowid) from alembic_version)")
            fixed.append(str(path))
    return fixed


def _create_storages(home: str) -> None:
    """Dagster's default SQLite storages, where `DagsterInstance.get()` puts them (nothing else of the
    instance is built: a dagster.yaml's launcher or coordinator is not ours to start here)."""
    from exo_dagster.dagster_private import SqliteEventLogStorage, SqliteRunStorage, SqliteScheduleStorage

    for storage in (
        SqliteRunStorage.from_local(os.path.join(home, "history")),
        SqliteEventLogStorage(os.path.join(home, "history", "runs")),
        SqliteScheduleStorage.from_local(os.path.join(home, "schedules")),
    ):
        storage.dispose()


def _alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    from exo_dagster.dagster_private import get_alembic_config, sqlite_run_storage_module

    return ScriptDirectory.from_config(get_alembic_config(sqlite_run_storage_module.__file__)).get_current_head()


def _single_head(path: Path) -> bool:
    try:
        with sqlite3.connect(path, timeout=60) as con:
            return con.execute("select count(*) from alembic_version").fetchone()[0] == 1
    except sqlite3.Error:
        return False


def _configured_elsewhere(home: str | os.PathLike) -> bool:
    """A dagster.yaml that names any storage (PostgreSQL, ...) is not the embedded SQLite default."""
    text = Path(home, "dagster.yaml").read_text(encoding="utf-8", errors="replace")
    return any(key in text for key in ("storage:", "run_storage:", "event_log_storage:", "schedule_storage:"))
