"""SHA-256, the one hash exo uses: of a file's bytes, of a text, and shortened to name things.

The values name files, assets, idempotency keys and run keys that already exist, so they stay as
they are: the hex digest of the UTF-8 bytes, a prefix of it when shortened.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

CHUNK = 1 << 20


def sha256_text(text: str) -> str:
    """The hex SHA-256 of `text` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def short_hash(text: str, length: int) -> str:
    """The first `length` hex digits of `sha256_text(text)`."""
    return sha256_text(text)[:length]


def sha256_file(path: str | os.PathLike, fs: Any = None, chunk: int = CHUNK) -> str:
    """The hex SHA-256 of a file's bytes, read `chunk` bytes at a time; `fs`: an fsspec filesystem, or None for a
    local file."""
    digest = hashlib.sha256()
    with open(path, "rb") if fs is None else fs.open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
