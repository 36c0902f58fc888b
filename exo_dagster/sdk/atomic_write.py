"""Writing a file so that readers see the old one or the whole new one, never half of it.

    with atomic_write(target, "w") as fh:     # a handle on a temporary file beside the target
        fh.write(text)                        # renamed into place when the block ends without error

    with atomic_path(target) as tmp:          # for writers that want a path (Polars, DuckDB)
        frame.write_parquet(tmp)

A local target is written to `temp_files.temp_path(target)` (`.<name>.<pid>-<random>.tmp`, the name
`temp_files.sweep` knows) and moved with `os.replace`; with `sweep` (the default) orphans of killed
writes of the same target are removed first. A remote target (a URL, a UPath, or a path on a given
fsspec filesystem) is written to `.<name>.<random>.tmp` beside it and moved with `fs.mv`. On an
error the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any, cast

import fsspec
from fsspec.implementations.local import LocalFileSystem

from exo_dagster.sdk import paths
from exo_dagster.sdk.internal import temp_files


def _resolve(target: Any, fs: fsspec.AbstractFileSystem | None) -> tuple[fsspec.AbstractFileSystem | None, str]:
    """(None, local path) for a local target, else (filesystem, path on it)."""
    text = os.fspath(target) if isinstance(target, os.PathLike) and not hasattr(target, "fs") else str(target)
    if fs is None and not paths.is_url(text):
        return None, text
    if fs is None:
        fs = getattr(target, "fs", None) or fsspec.core.url_to_fs(text)[0]  # a UPath's own filesystem, else the URL's
    if isinstance(fs, LocalFileSystem):
        return None, fs._strip_protocol(text)
    return fs, text


def _remote_temp(path: str) -> str:
    head, sep, name = path.rpartition("/")
    return f"{head}{sep}.{name}.{uuid.uuid4().hex}.tmp"


@contextlib.contextmanager
def atomic_path(target: Any, fs: fsspec.AbstractFileSystem | None = None, *, sweep: bool = True) -> Iterator[str]:
    """A temporary path beside `target` to write; moved onto `target` when the block ends without error.

    `target`: a local path, a URL, a UPath, or a path on `fs`. The path yielded is local for a local
    target, else a path on the same filesystem (the UPath's, `fs`, or the URL's)."""
    with _into_place(*_resolve(target, fs), sweep) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_write(
    target: Any,
    mode: str = "wb",
    fs: fsspec.AbstractFileSystem | None = None,
    *,
    encoding: str | None = None,
    sweep: bool = True,
) -> Iterator[IO[Any]]:
    """A handle on a temporary file beside `target` (`mode` "wb" or "w"); closed and moved onto `target`
    when the block ends without error. See `atomic_path` for what `target` may be."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_write writes a new file: mode {mode!r} must start with 'w'")
    remote, path = _resolve(target, fs)
    text = {} if "b" in mode else {"encoding": encoding}
    with _into_place(remote, path, sweep) as tmp:
        if remote is None:
            with open(tmp, mode, encoding=text.get("encoding")) as fh:
                yield fh
        else:
            with remote.open(tmp, mode, **text) as fh:
                yield cast(IO[Any], fh)  # an fsspec file: file-like (io.IOBase), though not typed as IO


@contextlib.contextmanager
def _into_place(remote: fsspec.AbstractFileSystem | None, path: str, sweep: bool) -> Iterator[str]:
    if remote is None:
        if sweep:
            temp_files.sweep(path)  # orphans of killed writes of this target
        tmp = temp_files.temp_path(path)
    else:
        tmp = _remote_temp(path)
    try:
        yield tmp
        if remote is None:
            os.replace(tmp, path)
        else:
            remote.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            if remote is None:
                os.remove(tmp)
            elif remote.exists(tmp):
                remote.rm(tmp)
        raise
