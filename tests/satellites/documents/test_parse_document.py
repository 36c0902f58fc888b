"""parse-document over real PDF, DOCX, HTML and text files made here; broken files become row errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

from exo_dagster import compile_cluster, parse_cluster
from exo_dagster.sdk.row_map import RowFailed
from satellites.documents.parse_document import ParseDocumentConfig, parse_document


def make_pdf(pages: list[str]) -> bytes:
    """A real PDF 1.4 file (Helvetica text, one content stream per page), with a correct xref table."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{' '.join(f'{4 + 2 * i} 0 R' for i in range(n))}] /Count {n} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        stream = (
            "BT /F1 12 Tf 14 TL 72 720 Td " + " ".join(f"({escape(line)}) Tj T*" for line in text.split("\n")) + " ET"
        )
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode())
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode() + b"".join(
        f"{o:010d} 00000 n \n".encode() for o in offsets
    )
    return out + f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()


HTML = """<!doctype html><html><head><title>ignored title</title><style>p {color: red}</style></head>
<body><script>var secret = "not text";</script>
<h2>Release   notes</h2>
<p>Version <strong>2.0</strong> is out.<br>See the <a href="https://example.org/changes">change log</a>.</p>
<ul><li>faster</li><li><p>smaller</p></li></ul>
<pre>x = 1
  y = 2</pre>
<table><tr><th>name</th><th>qty</th></tr><tr><td>bolts</td><td>12</td></tr></table>
</body></html>"""


def make_docx(path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    document.add_paragraph("north beat the plan", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "region", (0, 1): "revenue", (1, 0): "north", (1, 1): "120"}.items():
        table.cell(r, c).text = value
    document.save(path)


@pytest.fixture
def docs(tmp_path):
    (tmp_path / "report.pdf").write_bytes(make_pdf(["Hello (world)\nsecond line", "Page two text"]))
    make_docx(tmp_path / "report.docx")
    (tmp_path / "notes.html").write_text(HTML)
    (tmp_path / "readme.md").write_text("# Title\n\nSome *markdown* text.\n")
    good = make_pdf(["fine"])
    (tmp_path / "corrupt.pdf").write_bytes(good[: len(good) // 2])
    return tmp_path


def by_name(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["path"].rsplit("/", 1)[-1]: row for row in frame.to_dicts()}


@pytest.mark.slow
def test_each_format_to_text(docs, make_ctx):
    out = parse_document(
        make_ctx(input={"paths": ["report.pdf", "report.docx", str(docs / "notes.html"), "readme.md"]}),
        ParseDocumentConfig(),
    )
    assert out.columns == ["path", "format", "text", "pages", "chars", "_error"]
    rows = by_name(out)
    assert rows["report.pdf"]["text"] == "Hello (world)\nsecond line\n\nPage two text"
    assert rows["report.pdf"]["pages"] == 2 and rows["report.pdf"]["format"] == "pdf"
    assert (
        rows["report.docx"]["text"]
        == "Quarterly report\n\nRevenue grew in every region.\n\n- north beat the plan\n\nregion\trevenue\nnorth\t120"
    )
    assert rows["report.docx"]["pages"] is None
    html = rows["notes.html"]["text"]
    assert html == (
        "Release notes\n\nVersion 2.0 is out.\nSee the change log.\n\n- faster\n- smaller\n\n"
        "x = 1\n  y = 2\n\nname\tqty\nbolts\t12"
    )
    assert rows["readme.md"]["text"] == "# Title\n\nSome *markdown* text." and rows["readme.md"]["format"] == "markdown"
    assert all(r["chars"] == len(r["text"]) and r["_error"] is None for r in rows.values())


def test_markdown_output_keeps_structure(docs, make_ctx):
    out = by_name(
        parse_document(
            make_ctx(input={"paths": ["report.docx", "notes.html"]}), ParseDocumentConfig(output_format="markdown")
        )
    )
    assert out["report.docx"]["text"] == (
        "# Quarterly report\n\nRevenue grew in every region.\n\n- north beat the plan\n\n"
        "| region | revenue |\n| --- | --- |\n| north | 120 |"
    )
    assert out["notes.html"]["text"] == (
        "## Release notes\n\nVersion **2.0** is out.\nSee the [change log](https://example.org/changes).\n\n"
        "- faster\n- smaller\n\n```\nx = 1\n  y = 2\n```\n\n| name | qty |\n| --- | --- |\n| bolts | 12 |"
    )


def test_broken_and_missing_files_are_row_errors_naming_the_file(docs, make_ctx):
    (docs / "fake.pdf").write_text("this is not a pdf")
    ctx = make_ctx(input={"paths": ["report.pdf", "corrupt.pdf", "gone.docx", "fake.pdf"]})
    rows = by_name(parse_document(ctx, ParseDocumentConfig()))
    assert rows["report.pdf"]["_error"] is None and rows["report.pdf"]["pages"] == 2
    assert rows["corrupt.pdf"]["text"] is None
    assert rows["corrupt.pdf"]["_error"].startswith("DocumentError: `corrupt.pdf`: not a readable PDF")
    assert rows["gone.docx"]["_error"] == f"MissingFile: parse-document: missing file: {docs / 'gone.docx'}"
    assert "`fake.pdf`: not a readable PDF" in rows["fake.pdf"]["_error"]
    assert ctx.metadata["exo/rows_failed"] == 3 and "corrupt.pdf" in ctx.metadata["exo/row_errors"]

    strict = dataclasses.replace(make_ctx(input={"paths": ["report.pdf", "corrupt.pdf"]}), on_row_error="fail")
    with pytest.raises(RowFailed, match="corrupt.pdf"):
        parse_document(strict, ParseDocumentConfig())


def test_paths_from_per_row_input_or_previous_step_and_rerun_uses_the_cache(docs, make_ctx, stored, tmp_path):
    config = ParseDocumentConfig()
    cached = {
        "cache_path": str(tmp_path / "cache.sqlite"),
        "identity": ("satellite/exospherehost/parse-document", "1.0.0", config.model_dump(mode="json", by_alias=True)),
    }
    per_row = dataclasses.replace(make_ctx(), rows=pl.LazyFrame({"path": ["report.pdf", "readme.md"]}), **cached)
    first = parse_document(per_row, config)
    assert first["chars"].to_list() == [40, 30] and per_row.metadata["exo/rows_computed"] == 2

    again = dataclasses.replace(make_ctx(), rows=pl.LazyFrame({"path": ["report.pdf", "readme.md"]}), **cached)
    assert parse_document(again, config).equals(first)
    assert (again.metadata["exo/rows_cached"], again.metadata["exo/rows_computed"]) == (2, 0)

    (docs / "readme.md").write_text("changed, and longer than before\n")  # a new version of a file is new work
    files = stored("files", pl.DataFrame({"path": [str(docs / "report.pdf"), str(docs / "readme.md")], "size": [1, 2]}))
    third = dataclasses.replace(make_ctx(previous=files), **cached)
    out = parse_document(third, config)
    assert out["text"].to_list()[1] == "changed, and longer than before"
    assert third.metadata["exo/rows_computed"] == 2  # get-files' fingerprint columns are part of the row key

    with pytest.raises(ValueError, match="has no `path` column"):
        parse_document(make_ctx(previous=stored("other", pl.DataFrame({"file": ["x"]}))), config)


def test_docling_backend_without_the_extra_names_it(docs, make_ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "docling", None)  # as on a machine without the extra, even if it is installed
    with pytest.raises(ImportError, match=r"optional `docling` extra.*pip install 'exo-dagster\[docling\]'"):
        parse_document(make_ctx(input={"paths": ["report.pdf"]}), ParseDocumentConfig(backend="docling"))


def test_catalog_loads_without_the_documents_extra_and_says_which_extra_a_pdf_needs(docs, make_ctx, monkeypatch):
    blocked = "import sys; sys.modules['pypdf'] = sys.modules['docx'] = None; import satellites; print('loaded')"
    assert (
        subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120).stdout
        == "loaded\n"
    )
    for name in ("pypdf", "docx"):
        monkeypatch.setitem(sys.modules, name, None)
    out = parse_document(make_ctx(input={"paths": ["report.pdf", "readme.md"]}), ParseDocumentConfig())
    assert out["_error"].to_list() == [
        "DocumentError: parse-document needs `pypdf`, part of the optional `documents` extra, "
        "which is not installed: pip install 'exo-dagster[documents]'",
        None,
    ]


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/documents
  satellites:
    - name: Find documents
      uses: satellite/exospherehost/get-files
      identifier: files
      config: {folder-path: docs, allowed-extensions: [pdf, docx, html]}
    - name: Parse
      uses: satellite/exospherehost/parse-with-docling
      identifier: parsed
      config: {output-format: markdown, backend: BACKEND}
      input:
        path: $${{ satellites.files.output.path }}
"""


def run_cluster(tmp_path, text: str) -> dg.ExecuteInProcessResult:
    (tmp_path / "cluster.yaml").write_text(text)
    cluster = parse_cluster(text, str(tmp_path / "cluster.yaml"))
    job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


@pytest.mark.slow
def test_in_a_compiled_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.pdf").write_bytes(make_pdf(["alpha page"]))
    (docs / "b.html").write_text("<h1>Bravo</h1><p>text</p>")
    (docs / "c.pdf").write_bytes(b"%PDF-1.4\n\x00\x01 broken")
    make_docx(docs / "d.docx")

    result = run_cluster(tmp_path, CLUSTER.replace("BACKEND", "builtin"))
    assert result.success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__documents" / "parsed.parquet")
    rows = by_name(out)
    assert rows["a.pdf"]["text"] == "alpha page" and rows["b.html"]["text"] == "# Bravo\n\ntext"
    assert rows["d.docx"]["text"].startswith("# Quarterly report")
    assert "`" + str(docs / "c.pdf") + "`: not a readable PDF" in rows["c.pdf"]["_error"]
    [materialization] = list(result.asset_materializations_for_node("parsed__test__documents"))
    assert materialization.metadata["exo/rows_failed"].value == 1

    monkeypatch.setitem(sys.modules, "docling", None)  # the extra is absent (and stays so if someone installs it)
    failed = run_cluster(tmp_path, CLUSTER.replace("BACKEND", "docling"))
    assert not failed.success
    [failure] = [e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "pip install 'exo-dagster[docling]'" in failure.event_specific_data.error.to_string()
