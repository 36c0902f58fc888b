"""exo_dagster.sdk.hashing keeps the values that name existing files, assets and keys."""

from __future__ import annotations

import hashlib

import fsspec

from exo_dagster.sdk import hashing
from exo_dagster.sdk.tls import tls_context


def test_values_are_the_plain_sha256_hex_digests(tmp_path):
    text = "cluster/ünïcode.yaml"
    assert hashing.sha256_text(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert hashing.short_hash(text, 8) == hashlib.sha256(text.encode()).hexdigest()[:8]
    assert hashing.sha256_text("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    data = bytes(range(256)) * 10_000  # several chunks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    wanted = hashlib.sha256(data).hexdigest()
    assert hashing.sha256_file(path) == wanted
    assert hashing.sha256_file(str(path), chunk=4096) == wanted
    fs = fsspec.filesystem("memory")
    fs.pipe("/h/f.bin", data)
    assert hashing.sha256_file("/h/f.bin", fs) == wanted


def test_names_built_from_hashes_are_unchanged():
    from exo_dagster.location import error_asset_name
    from exo_dagster.sdk.row_cache import row_key

    assert (
        error_asset_name("/srv/clusters/orders.yaml")
        == "orders_" + hashlib.sha256(b"/srv/clusters/orders.yaml").hexdigest()[:8]
    )
    assert row_key("s", "1", {"a": 1}, {"x": 2}) == hashlib.sha256(b'["s","1",{"a":1},{"x":2}]').hexdigest()


def test_tls_context_switches():
    import ssl

    strict = tls_context()
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = tls_context(verify=False)
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
