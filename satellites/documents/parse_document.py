"""satellite/exospherehost/parse-document: PDF, DOCX, HTML and text files into text or markdown.

The built-in backend is small and pure Python (pypdf, python-docx, the standard library's HTML
parser); docling is an optional backend for layout-aware conversion, behind the `docling` extra.
Each file is parsed as one row of `ctx.map_rows`: concurrently, cached (a re-run skips finished
files), and a file that cannot be read becomes that row's `_error` instead of failing the batch.
"""

from __future__ import annotations

import io
import re
import threading
from html.parser import HTMLParser
from typing import Any, Literal, cast

import polars as pl
from pydantic import Field

from exo_dagster.sdk import SatelliteConfig, StepContext, satellite, step_errors
from exo_dagster.sdk import file_ops as _files

FORMATS = {
    "pdf": "pdf",
    "docx": "docx",
    "html": "html",
    "htm": "html",
    "xhtml": "html",
    "txt": "text",
    "text": "text",
    "md": "markdown",
    "markdown": "markdown",
    "rst": "text",
    "log": "text",
}
OUTPUT_SCHEMA = {
    "path": pl.Utf8,
    "format": pl.Utf8,
    "text": pl.Utf8,
    "pages": pl.Int64,
    "chars": pl.Int64,
    "_error": pl.Utf8,
}


class ParseDocumentConfig(SatelliteConfig):
    output_format: Literal["text", "markdown"] = Field(
        "text", description="What the `text` column holds: plain text, or markdown (headings, lists and tables kept)."
    )
    backend: Literal["builtin", "docling"] = Field(
        "builtin",
        description="builtin: pypdf, python-docx and an HTML parser (the `documents` extra); docling: "
        "layout-aware conversion (the `docling` extra).",
    )
    format: Literal["auto", "pdf", "docx", "html", "text", "markdown"] = Field(
        "auto", description="The files' format; auto: from the extension, else from the first bytes."
    )
    column: str = Field(
        "path", description="The column holding the file paths or URLs (of the per-row input or the previous step)."
    )
    storage_options: dict = Field(
        {}, description="fsspec options for remote files (the step's secrets are added, names lower-cased)."
    )


class DocumentError(step_errors.PermanentError):
    """One file could not be parsed; the message names the file and why."""


@satellite(
    "satellite/exospherehost/parse-document",
    config=ParseDocumentConfig,
    aliases=["satellite/exospherehost/parse-with-docling"],
    inputs={
        "paths": "file paths or URLs (${{ satellites.files.output.path }}, or per row $${{ ... }}); "
        "default: the previous step's `path` column"
    },
    outputs={
        "path": "the file, as given",
        "format": "pdf, docx, html, text or markdown",
        "text": "the extracted text or markdown",
        "pages": "page count (PDF; docling: any paged format)",
        "chars": "length of `text`",
        "_error": "why this file could not be parsed (null when it was)",
    },
    kinds=("polars", "pdf"),
)
def parse_document(ctx: StepContext, config: ParseDocumentConfig) -> pl.DataFrame:
    """Extracts the text of PDF, DOCX, HTML and text/markdown files, as plain text or markdown, one row per file.

    `backend: builtin` uses pypdf and python-docx (the `documents` extra) and a standard-library HTML
    parser; `backend: docling` uses docling (the `docling` extra). Files are parsed concurrently and
    cached per file; an unreadable file gives a row with `_error` unless the step sets `on-row-error: fail`.
    """
    options = _files.storage_options(ctx, config.storage_options)
    rows = _files.with_stat_fingerprint(_files.path_rows(ctx, config.column, "parse-document"), ctx, options)
    convert = _docling_converter(config.output_format) if config.backend == "docling" else None

    def parse_one(row: dict, key: str) -> dict:
        path = row["path"]
        if not path:
            raise DocumentError("empty path")
        url = _files.resolve(ctx, path)
        try:
            fs, fspath = _files.filesystem(url, options)
            with fs.open(fspath, "rb") as fh:
                data = cast(bytes, fh.read())  # fsspec types open() as text or binary; "rb" is binary
        except FileNotFoundError:  # a missing file says so, with the path it looked at (not a parse error)
            raise step_errors.MissingFile(url, "parse-document") from None
        except OSError as exc:
            raise DocumentError(f"`{path}`: cannot read it ({type(exc).__name__}: {exc})") from None
        fmt = _format_of(path, data, config.format)
        if convert is not None:
            text, pages = convert(_files.basename(url), data, path)
        else:
            text, pages = PARSERS[fmt](data, path, config.output_format == "markdown")
        return {"format": fmt, "text": text, "pages": pages, "chars": len(text)}

    results = ctx.map_rows(parse_one, rows) if rows.height else pl.DataFrame()
    return _files.result_table(rows, results, OUTPUT_SCHEMA)


def _format_of(path: str, data: bytes, wanted: str) -> str:
    """The configured format, else the extension, else a look at the first bytes."""
    if wanted != "auto":
        return wanted
    name = _files.basename(path.split("?", 1)[0]).lower()
    if "." in name and name.rsplit(".", 1)[1] in FORMATS:
        return FORMATS[name.rsplit(".", 1)[1]]
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith(b"pk\x03\x04") and b"word/" in data[:65536]:
        return "docx"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "html"
    try:
        data[:65536].decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(
            f"`{path}`: cannot tell its format (not PDF, DOCX, HTML or UTF-8 text); set `format:`"
        ) from None
    return "text"


def _parse_pdf(data: bytes, path: str, markdown: bool) -> tuple[str, int]:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise DocumentError(_missing_extra("pypdf", "documents")) from None
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"`{path}`: the PDF is encrypted with a password")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(f"`{path}`: not a readable PDF ({type(exc).__name__}: {exc})") from None
    return "\n\n".join(p for p in pages if p), len(pages)


def _parse_docx(data: bytes, path: str, markdown: bool) -> tuple[str, None]:
    try:
        import docx
        from docx.table import Table
    except ImportError:
        raise DocumentError(_missing_extra("python-docx", "documents")) from None
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for item in document.iter_inner_content():
            block = _docx_table(item, markdown) if isinstance(item, Table) else _docx_paragraph(item, markdown)
            if block:
                blocks.append(block)
    except Exception as exc:
        raise DocumentError(f"`{path}`: not a readable DOCX ({type(exc).__name__}: {exc})") from None
    return _join(blocks), None


def _docx_paragraph(paragraph, markdown: bool) -> tuple[str, str] | None:
    text = paragraph.text.strip()
    if not text:
        return None
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    level = re.fullmatch(r"Heading (\d)", style)
    if style.startswith("List Bullet"):
        return "li", "- " + text
    if style.startswith("List Number"):
        return "li", "1. " + text
    if markdown and (level or style == "Title"):
        return "p", "#" * (int(level.group(1)) if level else 1) + " " + text
    return "p", text


def _docx_table(table, markdown: bool) -> tuple[str, str] | None:
    rows = [[" ".join(cell.text.split()) for cell in row.cells] for row in table.rows]
    return ("p", _table(rows, markdown)) if rows else None


def _parse_html(data: bytes, path: str, markdown: bool) -> tuple[str, None]:
    parser = _HtmlText(markdown)
    parser.feed(_decode(data))
    parser.close()
    return _join(parser.blocks), None


def _parse_text(data: bytes, path: str, markdown: bool) -> tuple[str, None]:
    return _decode(data).strip(), None


PARSERS = {"pdf": _parse_pdf, "docx": _parse_docx, "html": _parse_html, "text": _parse_text, "markdown": _parse_text}


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) unless an HTML meta tag or XML header names another charset."""
    declared = re.search(rb"""charset=["']?([A-Za-z0-9_.:-]+)""", data[:4096]) or re.search(
        rb"""encoding=["']([A-Za-z0-9_.:-]+)""", data[:200]
    )
    encoding = declared.group(1).decode() if declared else "utf-8-sig"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("utf-8-sig", errors="replace")


def _join(blocks: list[tuple[str, str]]) -> str:
    """Blocks separated by blank lines; consecutive list items by single newlines."""
    out: list[str] = []
    for i, (kind, text) in enumerate(blocks):
        if i:
            out.append("\n" if kind == "li" and blocks[i - 1][0] == "li" else "\n\n")
        out.append(text)
    return "".join(out)


def _table(rows: list[list[str]], markdown: bool) -> str:
    if not markdown:
        return "\n".join("\t".join(r) for r in rows)
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * width)
    return "\n".join(lines)


class _HtmlText(HTMLParser):
    """Readable text (or markdown) from HTML: block structure kept, scripts/styles/head dropped."""

    BLOCKS = {
        "p",
        "div",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "nav",
        "aside",
        "li",
        "ul",
        "ol",
        "blockquote",
        "dl",
        "dt",
        "dd",
        "figure",
        "figcaption",
        "form",
        "address",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "body",
    }
    SKIP = {"script", "style", "head", "noscript", "template", "svg", "iframe", "object"}
    INLINE_MD = {"strong": "**", "b": "**", "em": "*", "i": "*", "code": "`"}

    def __init__(self, markdown: bool):
        super().__init__(convert_charrefs=True)
        self.markdown = markdown
        self.blocks: list[tuple[str, str]] = []
        self.buf: list[str] = []
        self.prefix: tuple[str, str] = ("p", "")
        self.skip = 0
        self.pre = 0
        self.quote = 0
        self.lists: list[list] = []  # [tag, next number]
        self.marks: list[tuple[str, int, str | None]] = []  # (tag, start in buf, href)
        self.table: list[list[str]] | None = None
        self.row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self.buf.append("\x00")
        elif tag == "pre":
            self.flush()
            self.pre += 1
        elif tag in ("td", "th"):
            self.buf = []
        elif tag == "tr":
            self.row = []
        elif tag == "table":
            self.flush()
            self.table = []
        elif tag in self.BLOCKS:
            self.flush()
            if tag in ("ul", "ol"):
                self.lists.append([tag, 1])
            elif tag == "li":
                kind, number = self.lists[-1] if self.lists else ("ul", 1)
                bullet = f"{number}. " if kind == "ol" else "- "
                if self.lists:
                    self.lists[-1][1] += 1
                self.prefix = ("li", "  " * max(len(self.lists) - 1, 0) + bullet)
            elif tag == "blockquote":
                self.quote += 1
            elif tag == "hr" and self.markdown:
                self.blocks.append(("p", "---"))
            elif tag[0] == "h" and tag[1:].isdigit() and self.markdown:
                self.prefix = ("p", "#" * int(tag[1]) + " ")
        elif self.markdown and not self.pre and (tag in self.INLINE_MD or tag == "a"):
            self.marks.append((tag, len(self.buf), dict(attrs).get("href") if tag == "a" else None))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if self.skip:
            return
        if tag == "pre" and self.pre:
            text = "".join(self.buf).replace("\x00", "\n").strip("\n")
            self.buf = []
            self.pre -= 1
            if text.strip():
                self.blocks.append(("p", f"```\n{text}\n```" if self.markdown else text))
        elif tag in ("td", "th"):
            if self.row is not None:
                self.row.append(_collapse("".join(self.buf)).replace("\n", " "))
            self.buf = []
        elif tag == "tr":
            if self.table is not None and self.row:
                self.table.append(self.row)
            self.row = None
        elif tag == "table":
            if self.table:
                self.blocks.append(("p", _table(self.table, self.markdown)))
            self.table = None
        elif tag in self.BLOCKS:
            self.flush()
            self.prefix = ("p", "")
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            elif tag == "blockquote":
                self.quote = max(self.quote - 1, 0)
        elif self.marks and self.marks[-1][0] == tag:
            _, start, href = self.marks.pop()
            inner = "".join(self.buf[start:])
            core = inner.strip()
            if core:
                lead, trail = inner[: len(inner) - len(inner.lstrip())], inner[len(inner.rstrip()) :]
                if tag == "a":
                    wrapped = f"[{core}]({href})" if href and not href.startswith(("javascript:", "#")) else core
                else:
                    wrapped = self.INLINE_MD[tag] + core + self.INLINE_MD[tag]
                self.buf[start:] = [lead + wrapped + trail]

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.buf.append(data)

    def flush(self) -> None:
        text, self.buf, self.marks = "".join(self.buf), [], []
        text = _collapse(text)
        if not text:
            return  # keep the prefix: <li><p>text</p></li> puts the bullet on the paragraph
        kind, prefix = self.prefix
        self.prefix = ("p", "")
        if self.markdown and self.quote:
            prefix = "> " * self.quote + prefix
        self.blocks.append((kind, prefix + text.replace("\n", "\n" + " " * len(prefix))))

    def close(self) -> None:
        super().close()
        self.flush()


def _collapse(text: str) -> str:
    """HTML whitespace rules: runs of whitespace are one space; <br> (\\x00) is a line break."""
    lines = [" ".join(part.split()) for part in text.split("\x00")]
    return "\n".join(lines).strip()


def _missing_extra(package: str, extra: str) -> str:
    return (
        f"parse-document needs `{package}`, part of the optional `{extra}` extra, which is not installed: "
        f"pip install 'exo-dagster[{extra}]'"
    )


def _docling_converter(output_format: str):
    """Docling's converter, loaded once per step; a clear error naming the extra when it is not installed."""
    try:
        # the optional `docling` extra, not in the development environment pyright checks against
        from docling.datamodel.base_models import DocumentStream  # pyright: ignore[reportMissingImports]
        from docling.document_converter import DocumentConverter  # pyright: ignore[reportMissingImports]
    except ImportError:
        raise ImportError(
            "parse-document: `backend: docling` needs the optional `docling` extra, which is not "
            "installed: pip install 'exo-dagster[docling]' (or use `backend: builtin`)"
        ) from None
    converter = DocumentConverter()
    lock = threading.Lock()  # one conversion at a time: docling parallelises inside, and its models are shared

    def convert(name: str, data: bytes, path: str) -> tuple[str, Any]:
        try:
            with lock:
                document = converter.convert(DocumentStream(name=name, stream=io.BytesIO(data))).document
        except Exception as exc:
            raise DocumentError(f"`{path}`: docling could not convert it ({type(exc).__name__}: {exc})") from None
        text = document.export_to_markdown() if output_format == "markdown" else document.export_to_text()
        return text, (len(document.pages) or None)

    return convert
