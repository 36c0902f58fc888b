"""Text from cluster files reaches people as text: the `exo_errors` descriptions and the step descriptions the UI
renders as Markdown show markup as typed, and `exo validate`'s output and the location log carry no terminal escapes.

The Markdown is rendered with a real CommonMark renderer (markdown-it-py, GFM tables and strikethrough on);
`exo validate` runs as users run it, the installed script in a subprocess.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from exo_dagster.location import ERRORS_GROUP, build_location, location_definitions

markdown_it = pytest.importorskip("markdown_it")
RENDER = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
EXO = Path(sys.executable).parent / "exo"
MARKUP = ("<script", "<a ", "<img", "<em>", "<strong>", "<h1", "<table", "<blockquote")
ESCAPES = ("\x1b", "\r", "\x9b", "\u202e")

# the first error quotes `<script>`, a link and a fence of four backticks (which would close a ``` block)
MARKUP_FILE = """\
version: 0.0.1b
cluster:
  identifier: evil/markup
  satellites:
    - name: Read
      uses: "satellite/<script>alert(1)</script>[link](http://x)![i](http://x/p.png)````\\n# heading\\r"
"""
# raw ESC and CR bytes in the file: a located error that quotes the line
ESCAPE_FILE = (
    "version: 0.0.1b\ncluster:\n  identifier: evil/escapes\n  satellites:\n"
    "    - name: Read \x1b[31mRED\x1b[0m\r\x1b[2K\x9b31m\u202eexe.yaml\n"
    "      uses: satellite/exospherehost/read-table\n"
)
HEALTHY_FILE = """\
version: 0.0.1b
cluster:
  identifier: evil/healthy
  description: "<script>alert(1)</script> [job link](http://x)"
  satellites:
    - name: "<img src=x onerror=alert(1)> [name link](http://x)"
      description: "# Heading\\n\\n| a | b |\\n|---|---|\\n\\n*em* ![i](http://x/p.png) www.x.com"
      uses: satellite/exospherehost/read-table
      identifier: read
      config: {path: data.csv}
"""


@pytest.fixture(scope="module")
def clusters(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("untrusted")
    (folder / "markup.yaml").write_text(MARKUP_FILE)
    (folder / "escapes.yaml").write_bytes(ESCAPE_FILE.encode())
    (folder / "name\x1b[31m\r.yaml").write_text(MARKUP_FILE.replace("evil/markup", "evil/named"))  # a file name too
    (folder / "naïve²٣.yaml").write_text(MARKUP_FILE.replace("evil/markup", "evil/unicode"))  # not a Dagster name
    (folder / "healthy.yaml").write_text(HEALTHY_FILE)
    (folder / "data.csv").write_text("a\n1\n")
    return folder


@pytest.fixture(scope="module")
def built(clusters):
    return build_location([clusters])


def _shows_as_text(markdown: str) -> str:
    html = RENDER.render(markdown)
    for tag in MARKUP:
        assert tag not in html, f"{tag!r} rendered from:\n{markdown}\n---\n{html}"
    for char in ESCAPES:
        assert char not in markdown, f"{char!r} in:\n{markdown!r}"
    return html


def test_broken_files_show_their_text_escaped_in_the_exo_errors_assets(built):
    specs = {
        key.path[-1]: spec
        for asset in built.definitions.assets
        for key, spec in asset.specs_by_key.items()
        if key.path[0] == ERRORS_GROUP
    }
    assert len(specs) == 4 and any(name.startswith("na_ve_") for name in specs), sorted(specs)  # an ASCII name
    markup = next(spec for name, spec in specs.items() if name.startswith("markup_"))
    html = _shows_as_text(markup.description)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;[link](http://x)" in html  # shown, in the headline and the report
    assert html.count("<pre><code>") == 1  # the four backticks did not close the report's block
    assert "# heading" in html and "\u240d" in html  # the newline and CR the value held are visible stand-ins
    _shows_as_text(markup.metadata["exo/report"].md_str)
    escapes = next(spec for name, spec in specs.items() if name.startswith("escapes_"))
    html = _shows_as_text(escapes.description)
    assert "Read \u241b[31mRED\u241b[0m" in html and "control character U+001B" in html
    named = next(spec for name, spec in specs.items() if name.startswith("name_"))
    _shows_as_text(named.description)
    assert "\x1b" not in named.metadata["exo/file"] and "name\u241b[31m\u240d.yaml" in named.metadata["exo/file"]


def test_a_healthy_clusters_own_text_shows_as_typed_on_its_asset_and_job(built):
    assert [c.spec.identifier for c in built.clusters] == ["evil/healthy"]
    asset = next(a for a in built.definitions.assets if dg.AssetKey(["evil", "healthy", "read"]) in a.keys)
    html = _shows_as_text(asset.specs_by_key[dg.AssetKey(["evil", "healthy", "read"])].description)
    assert "&lt;img src=x onerror=alert(1)&gt; [name link](http://x)" in html and "# Heading" in html
    assert "<p>| a | b |\n|---|---|</p>\n<p>*em* ![i](http://x/p.png) www.x.com</p>" in html  # text, not markup
    job = built.definitions.resolve_job_def("evil__healthy")
    assert "&lt;script&gt;" in _shows_as_text(job.description)


def test_the_location_log_carries_no_terminal_escapes(clusters, caplog):
    with caplog.at_level(logging.WARNING, logger="exo_dagster.location"):
        location_definitions([clusters])
    warnings = [r.getMessage() for r in caplog.records if r.name == "exo_dagster.location"]
    assert len(warnings) == 4 and all(not any(c in w for c in ESCAPES) for w in warnings), warnings
    assert any("name\u241b[31m\u240d.yaml" in w for w in warnings)


@pytest.mark.slow
def test_exo_validate_prints_no_terminal_escapes(clusters):
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS")}
    out = subprocess.run([str(EXO), "validate", str(clusters)], env=env, capture_output=True, timeout=300)
    assert out.returncode == 1, out.stderr.decode()[-3000:]
    text = (out.stdout + out.stderr).decode()
    assert not any(c in text for c in ESCAPES), text[-3000:]
    assert "- name: Read \u241b[31mRED\u241b[0m\n" in text  # the quoted line (up to the CR, a line break), neutralised
    assert "name\u241b[31m\u240d.yaml" in text and "ok  " in text and "4 of 5 cluster file(s) would not load" in text
