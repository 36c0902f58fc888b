"""One set of storage options, spoken to both fsspec (writes, file ops) and Polars (lazy scans).

Credentials normally come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_REGION), which s3fs and Polars both read; explicit options use fsspec's
spelling and are translated for Polars here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_S3_TO_POLARS = {
    "key": "aws_access_key_id",
    "secret": "aws_secret_access_key",
    "token": "aws_session_token",
    "endpoint_url": "aws_endpoint_url",
    "region_name": "aws_region",
}


def polars_options(options: Mapping[str, Any] | None, url: str) -> dict[str, str] | None:
    """fsspec-style options -> Polars/object_store options (None for local paths)."""
    if "://" not in url or url.startswith("file://"):
        return None
    out: dict[str, str] = {}
    flat = dict(options or {})
    flat.update(flat.pop("client_kwargs", {}) or {})
    for key, value in flat.items():
        if key in _S3_TO_POLARS and value is not None:
            out[_S3_TO_POLARS[key]] = str(value)
    endpoint = out.get("aws_endpoint_url", "")
    if endpoint.startswith("http://"):
        out["aws_allow_http"] = "true"
    return out or None


def version_stamp(info: Mapping[str, Any]) -> str:
    """`size:modified` from an fsspec `info()` (local mtime, S3 LastModified, ...): what tells one
    version of a file from the next, wherever it lives."""
    modified = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("ETag")
    return f"{info.get('size')}:{modified}"


def first_path(path: str | tuple[str, ...]) -> str:
    return path if isinstance(path, str) else (path[0] if path else "")
