"""Fan-out chunk folders: where a run's chunk files go, and the clean-up that may delete them.

A merged fan-out output is a reference (`<key>.parquet.ref.json`) to its run's chunk files; when a later
run's merge replaces it, the superseded run's folder is garbage. Any step can write a file, so the old
reference proves nothing: a folder is deleted only when every check holds. The path is spelled exactly as
the fan-out spells this asset's run folder (so `..`, `.`, `//`, %-escapes, another root, asset, bucket or
scheme never match); the run id is a Dagster run id, of a run that is over; the folder resolves, links
followed, to where it is spelled; it holds the marker the fan-out wrote for this asset and run. Even then
only names the fan-out writes are deleted; anything else is kept, and every refusal is logged.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from typing import Any

from fsspec.implementations.local import LocalFileSystem
from upath import UPath

from exo_dagster.sdk import paths
from exo_dagster.sdk.atomic_write import atomic_write
from exo_dagster.sdk.internal.temp_files import temp_name_pattern

CHUNKS_DIR = "_chunks"  # chunk files under a remote base path: `<base>/_chunks/<key joined by __>/<run id>/`
LOCAL_CHUNKS_DIR = "chunks"  # ... under the data folder where outputs are local: `<data>/chunks/<key parts>/<run id>/`
MARKER = ".exo-chunks.json"  # written by the fan-out before a run's first chunk file: {"asset": [...], "run_id": ...}
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # Dagster's (uuid4)
CHUNK_FILE = re.compile(r"\d{6}\.parquet")
# names the fan-out writes in a run folder: chunk files, the marker, their atomic writes' leftovers (atomic_write.py)
_NAME = r"(?:\d{6}\.parquet|\.exo-chunks\.json)"
_OURS = re.compile(rf"{_NAME}|{temp_name_pattern(_NAME)}")
_MARKER_MAX = 4096


def chunk_file_name(index: int) -> str:
    return f"{index:06d}.parquet"


def chunks_root(base_path: Any) -> UPath:
    """The folder every asset's chunk folders live under (remote outputs: beside them; else the data folder)."""
    if base_path is not None and paths.is_url(str(base_path)):
        return base_path / CHUNKS_DIR
    return UPath(os.path.join(paths.data_dir(), LOCAL_CHUNKS_DIR))


def run_folder(base_path: Any, key_path: Sequence[str], run_id: str) -> UPath:
    """Where run `run_id` writes this asset's chunk files: the one spelling the writer and the clean-up share."""
    if base_path is not None and paths.is_url(str(base_path)):
        return base_path / CHUNKS_DIR / "__".join(key_path) / run_id
    return UPath(os.path.join(paths.data_dir(), LOCAL_CHUNKS_DIR, *key_path, run_id))


def marker_record(key_path: Sequence[str], run_id: str) -> dict:
    return {"asset": list(key_path), "run_id": run_id}


def mark(folder: UPath, key_path: Sequence[str], run_id: str) -> None:
    """Mark `folder` as this asset's chunk folder of `run_id` (before its first chunk file): clean-up needs it."""
    marker = folder / MARKER
    if not marker.exists():
        with atomic_write(marker, "w") as fh:
            fh.write(json.dumps(marker_record(key_path, run_id)))


def owned_folder(file: Any, base_path: Any, key_path: Sequence[str]) -> tuple[str, str] | None:
    """(run folder, run id) when `file` is spelled exactly as a chunk file this asset's fan-out writes, else None."""
    if not isinstance(file, str) or not all(_plain(part) for part in key_path):
        return None
    folder, _, name = file.rpartition("/")
    run_id = folder.rpartition("/")[2]
    if not (CHUNK_FILE.fullmatch(name) and RUN_ID.fullmatch(run_id)):
        return None
    expected = run_folder(base_path, key_path, run_id)
    return (folder, run_id) if str(expected) == folder and str(expected / name) == file else None


def _plain(part: Any) -> bool:
    return isinstance(part, str) and part not in ("", ".", "..") and not set(part) & {"/", "\\", "\x00"}


def run_is_over(instance: Any, run_id: str) -> bool:
    """Whether the Dagster instance knows run `run_id` and it has finished (its steps read no chunk any more)."""
    run = instance.get_run_by_id(run_id)
    return run is not None and run.is_finished


def show(value: Any) -> str:
    """A path from a file, for a log line: quoted and escaped (no control characters), cut short."""
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def drop_superseded(
    fs: Any,
    base_path: Any,
    key_path: Sequence[str],
    old: list,
    new: list,
    *,
    run_over: Callable[[str], bool],
    warn: Callable[[str], None],
) -> list[str]:
    """Delete the chunk folders `old` (the replaced reference's paths) names and `new` does not, of runs that
    are over (`run_over(run id)`); paths that are not this asset's chunk files are refused with a warning.
    Returns the folders cleared."""
    keep = {owned[0] for p in new if (owned := owned_folder(p, base_path, key_path))}
    folders: dict[str, str] = {}
    refused = []
    for p in old:
        owned = owned_folder(p, base_path, key_path)
        if owned is None:
            refused.append(p)
        elif owned[0] not in keep:
            folders[owned[0]] = owned[1]
    if refused:
        warn(
            f"the replaced reference names {len(refused)} path(s) that are not chunk files of this asset's fan-out "
            f"(e.g. {show(refused[0])}): not followed, nothing there deleted"
        )
    cleared = []
    for folder, run_id in sorted(folders.items()):
        if not run_over(run_id):  # in progress (its downstream steps may read it) or unknown here: kept
            continue
        try:
            why = _remove(fs, base_path, key_path, folder, run_id)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            warn(f"kept the superseded chunk folder {show(folder)}: {why}")
        else:
            cleared.append(folder)
    return cleared


def _remove(fs: Any, base_path: Any, key_path: Sequence[str], folder: str, run_id: str) -> str | None:
    """Delete what the fan-out wrote in `folder`, then the folder once empty; returns why anything was kept."""
    expected = marker_record(key_path, run_id)
    if paths.is_url(folder) and not isinstance(fs, LocalFileSystem):
        return _remove_remote(fs, folder, expected)
    root = str(chunks_root(base_path))
    if paths.is_url(folder):  # file://: a local folder, checked as one
        folder, root = fs._strip_protocol(folder), fs._strip_protocol(root)
    return _remove_local(folder, root, expected)


def _remove_local(folder: str, root: str, expected: dict) -> str | None:
    real = os.path.join(os.path.realpath(root), os.path.relpath(folder, root))
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it is not a plain folder ({exc.strerror})"
    try:  # by descriptor from here: the folder checked is the folder emptied
        if os.path.realpath(folder) != real or not os.path.samestat(os.fstat(fd), os.stat(real, follow_symlinks=False)):
            return "it resolves outside this asset's chunk folder (through a link)"
        if _local_marker(fd) != expected:
            return f"it holds no marker ({MARKER}) the fan-out wrote for this asset and run"
        names = os.listdir(fd)
        ours = [
            n
            for n in names
            if _OURS.fullmatch(n) and stat.S_ISREG(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode)
        ]
        for name in sorted(ours, key=lambda n: n == MARKER):  # the marker last
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    if len(names) > len(ours):
        return f"{len(names) - len(ours)} name(s) there the fan-out did not write are kept"
    os.rmdir(folder)
    return None


def _local_marker(fd: int) -> Any:
    try:
        handle = os.open(MARKER, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), dir_fd=fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):  # a link, a pipe: not what the fan-out writes
            return None
        return json.loads(os.read(handle, _MARKER_MAX + 1)[:_MARKER_MAX])
    except ValueError:
        return None
    finally:
        os.close(handle)


def _remove_remote(fs: Any, folder: str, expected: dict) -> str | None:
    fs.invalidate_cache(folder)
    try:
        entries = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return None
    if not entries:  # gone already (an object store has no empty folders)
        return None
    prefix = fs._strip_protocol(folder).rstrip("/") + "/"
    sizes = {
        e["name"][len(prefix) :]: e.get("size") or 0
        for e in entries
        if e.get("type") == "file" and e["name"].startswith(prefix) and "/" not in e["name"][len(prefix) :]
    }
    ours = [n for n in sizes if _OURS.fullmatch(n)]
    try:
        marker = json.loads(fs.cat_file(prefix + MARKER)) if 0 < sizes.get(MARKER, 0) <= _MARKER_MAX else None
    except (OSError, ValueError):
        marker = None
    if marker != expected:
        return f"it holds no marker ({MARKER}) the fan-out wrote for this asset and run"
    if others := [n for n in ours if n != MARKER]:
        fs.rm([prefix + n for n in others])
    fs.rm_file(prefix + MARKER)
    fs.invalidate_cache(folder)
    if len(entries) > len(ours):
        return f"{len(entries) - len(ours)} name(s) there the fan-out did not write are kept"
    return None
