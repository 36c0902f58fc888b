"""The step outputs as files DuckDB can read and never write, for `exo query`.

DuckDB's sandbox (`allowed_directories`, `allowed_paths`) allows reading and writing alike: allowing an
output's file or partition folder would let `copy ... to` overwrite it or add a partition. So `exo query`'s
database is allowed no local path at all; it reads the outputs through this fsspec filesystem instead,
under `exo-read://<absolute path>` (remote outputs: under their own protocol, `s3://`, in place of the
plain fsspec one). It opens only the files it was given and the Parquet files directly inside the folders
it was given, only for reading; every way of writing (`open` for writing, `mkdir`, `rm`, `mv`, `touch`)
raises `ReadOnly`.
"""

from __future__ import annotations

import io
import os
import posixpath
import threading
from collections.abc import Iterable
from typing import Any

from fsspec import AbstractFileSystem

from exo_dagster.errors import UserError

PROTOCOL = "exo-read"
PREFIX = PROTOCOL + "://"


class ReadOnly(UserError, PermissionError):
    """A write, or a read of something that is not a step output, through `exo query`'s filesystem."""


def local_url(path: str) -> str:
    return PREFIX + os.path.normpath(path)


class ReadOnlyFiles(AbstractFileSystem):
    """Reads the given files (and `*.parquet` directly inside the given folders) of `inner`; writes nothing.

    `protocol`: what DuckDB routes here (`exo-read` for local files, whose paths carry that prefix; `s3`
    for S3 objects, whose URLs are passed on to `inner` as they are)."""

    cachable = False

    def __init__(self, protocol: str, inner: Any, files: Iterable[str] = (), folders: Iterable[str] = ()):
        super().__init__()
        self.protocol, self.inner, self.local = protocol, inner, protocol == PROTOCOL
        self.files = {self._key(f) for f in files}
        self.folders = {self._key(f).rstrip("/") for f in folders}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:  # paths are taken as DuckDB passes them (see _key/_target)
        return path

    def _key(self, path: str) -> str:
        """The normalised form that is compared with what was allowed (`..` resolved, no protocol for local)."""
        path = str(path)
        if path.startswith(PREFIX):
            path = path[len(PREFIX) :]
        if "://" in path:
            scheme, rest = path.split("://", 1)
            return f"{scheme}://{posixpath.normpath(rest)}"
        return os.path.normpath(path)

    def _target(self, path: str) -> str:
        """What `inner` is given: the local path, or the URL itself."""
        return self._key(path)

    def _name(self, inner_name: str) -> str:
        return local_url(inner_name) if self.local else inner_name

    def _allowed(self, path: str) -> bool:
        key = self._key(path)
        if key in self.files:
            return True
        folder, name = key.rsplit("/", 1) if "/" in key else ("", key)
        return folder in self.folders and name.endswith(".parquet") and not name.startswith(".")

    def _check(self, path: str) -> str:
        if not self._allowed(path):
            raise ReadOnly(f"`exo query` reads only the step outputs: {path} is not one")
        return self._target(path)

    # --- reading -------------------------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> Any:
        if mode != "rb":
            raise ReadOnly(f"`exo query` is read-only: {path} cannot be written")
        target = self._check(path)
        if self.local:
            fd = os.open(target, os.O_RDONLY)
            return _PositionalFile(
                lambda start, n: os.pread(fd, n, start), os.fstat(fd).st_size, path, lambda: os.close(fd)
            )
        size = self.inner.size(target)
        return _PositionalFile(
            lambda start, n: self.inner.cat_file(target, start=start, end=min(start + n, size)), size, path
        )

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> list[str]:
        key = self._key(path)
        folder = key.rsplit("/", 1)[0]
        if key in self.files:
            return [self._name(self._target(path))]
        if folder not in self.folders:
            raise ReadOnly(f"`exo query` reads only the step outputs: {path} is not one")
        found = [self._name(p) for p in self.inner.glob(self._target(path))]
        return [p for p in found if self._allowed(p)]

    def info(self, path: str, **kwargs: Any) -> dict:
        entry = dict(self.inner.info(self._check(path)))
        entry["name"] = self._name(entry["name"])
        return entry

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list:
        if self._key(path) not in self.folders:
            raise ReadOnly(f"`exo query` reads only the step outputs: {path} is not one")
        entries = [e for e in self.inner.ls(self._target(path), detail=True) if self._allowed(self._name(e["name"]))]
        entries = [{**e, "name": self._name(e["name"])} for e in entries]
        return entries if detail else [e["name"] for e in entries]

    def size(self, path: str) -> int:
        return self.inner.size(self._check(path))

    def modified(self, path: str) -> Any:
        return self.inner.modified(self._check(path))

    def isdir(self, path: str) -> bool:
        return self._key(path) in self.folders and self.inner.isdir(self._target(path))

    def isfile(self, path: str) -> bool:
        return self._allowed(path) and self.inner.isfile(self._target(path))

    def exists(self, path: str, **kwargs: Any) -> bool:
        return self.isfile(path) or self.isdir(path)

    # --- writing: never ------------------------------------------------------------------------------------
    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        """Every writing method: refused, naming the path (the first argument: `path`, `path1` or `lpath`)."""
        path = args[0] if args else next((kwargs[k] for k in ("path", "path1", "lpath") if k in kwargs), "")
        raise ReadOnly(f"`exo query` is read-only: {path} cannot be changed")

    mkdir = makedirs = rmdir = rm = rm_file = _rm = mv = touch = cp_file = put_file = pipe_file = _refuse


class _PositionalFile(io.RawIOBase):
    """A read-only file whose position is per thread: DuckDB's threads share one handle and each seeks then
    reads, so a shared position would hand one thread the bytes another asked for."""

    def __init__(self, read_at: Any, size: int, name: str, release: Any = None):
        super().__init__()
        self._read_at, self.size, self.name, self._release = read_at, size, name, release
        self._position = threading.local()

    def close(self) -> None:
        if not self.closed and self._release is not None:
            self._release()
        super().close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return getattr(self._position, "value", 0)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self.size}[whence]
        self._position.value = max(0, base + offset)
        return self._position.value

    def read(self, size: int | None = -1) -> bytes:
        start = self.tell()
        wanted = self.size - start if size is None or size < 0 else min(size, self.size - start)
        data = self._read_at(start, wanted) if wanted > 0 else b""
        self._position.value = start + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)
