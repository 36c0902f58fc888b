"""satellite/exospherehost/chunk-text: split a text column into overlapping chunks, one row per chunk.

Chunk boundaries are found per text (a paragraph break beats a line break beats a sentence end beats
a space); carrying the other columns, numbering and slicing the chunks out of the text is Polars.
With `separators: []` and `unit: chars` the whole split is one Polars expression.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Literal

import polars as pl
from pydantic import Field, model_validator

from exo_dagster.sdk import SatelliteConfig, StepContext, satellite

NAMED_SEPARATORS = {
    "paragraph": r"\n[ \t]*\n\s*",
    "line": r"\n\s*",
    "sentence": r"(?<=[.!?])[\"')\]]*\s+",
    "word": r"\s+",
}
CHUNK_COLUMNS = ("chunk_index", "chunk", "start", "end")
SLICE_ROWS = 4096
LOOKAHEAD = 64


class ChunkTextConfig(SatelliteConfig):
    column: str = Field("text", description="The text column to split; it is replaced by the chunk columns.")
    chunk_size: int = Field(1000, gt=0, description="The most a chunk holds, in `unit`s.")
    overlap: int = Field(
        100, ge=0, description="About how much consecutive chunks share, in `unit`s; smaller than `chunk-size`."
    )
    unit: Literal["chars", "words"] = Field("chars", description="What `chunk-size` and `overlap` count.")
    separators: list[str] = Field(
        ["paragraph", "line", "sentence", "word"],
        description="Where to break, most preferred first: paragraph, line, sentence, word, or literal strings; "
        "`[]`: exact windows.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkTextConfig:
        if self.overlap >= self.chunk_size:
            raise ValueError(f"`overlap` ({self.overlap}) must be smaller than `chunk-size` ({self.chunk_size})")
        return self

    def patterns(self) -> list[re.Pattern]:
        """Separators in order of preference: the names above, or literal strings."""
        return [re.compile(NAMED_SEPARATORS.get(s, re.escape(s))) for s in self.separators if s]


@satellite(
    "satellite/exospherehost/chunk-text",
    config=ChunkTextConfig,
    inputs={"table": "a table with a text column (${{ satellites.X.output }}); default: the previous step's output"},
    outputs={
        "*": "the source row's other columns",
        "chunk_index": "0, 1, ... within the source row",
        "chunk": "the chunk's text",
        "start": "its first character's offset in the source text",
        "end": "the offset just past its last character",
    },
)
def chunk_text(ctx: StepContext, config: ChunkTextConfig) -> pl.DataFrame:
    """Splits a text column into chunks of at most `chunk-size` characters (or words, `unit: words`) that overlap
    by about `overlap`, breaking at the most preferred separator (paragraph, line, sentence, word) in the chunk's
    second half. Null or blank texts give no chunks; the text column is replaced by the chunk columns."""
    table = ctx.input_table("table")
    if table is None:
        raise ValueError("chunk-text needs a table: `input.table: ${{ satellites.X.output }}` or a previous step")
    frame = table.lazy()
    names = frame.collect_schema().names()
    if config.column not in names:
        raise ValueError(
            f"chunk-text: the input has no `{config.column}` column (it has: {', '.join(names)}); "
            f"set `column:` in the config"
        )
    keep = [c for c in names if c != config.column and c not in CHUNK_COLUMNS]
    frame = frame.with_columns(pl.col(config.column).cast(pl.Utf8))
    patterns = config.patterns()
    if config.unit == "chars" and not patterns:
        return _fixed_windows(frame, keep, config).collect(engine="streaming")
    parts = [
        _chunk_slice(part, keep, config, patterns) for part in frame.collect(engine="streaming").iter_slices(SLICE_ROWS)
    ]
    return pl.concat(parts) if parts else _fixed_windows(frame, keep, config).collect()


def _fixed_windows(frame: pl.LazyFrame, keep: list[str], config: ChunkTextConfig) -> pl.LazyFrame:
    """Exact windows of `chunk-size` characters every `chunk-size - overlap`, all in Polars."""
    length = pl.col(config.column).str.len_chars().cast(pl.Int64)
    step = config.chunk_size - config.overlap
    last_start = pl.max_horizontal(length - config.overlap, pl.lit(1, pl.Int64))
    return (
        frame.filter(pl.col(config.column).str.len_chars() > 0)
        .with_columns(start=pl.int_ranges(0, last_start, step, dtype=pl.Int64))
        .with_columns(chunk_index=pl.int_ranges(0, pl.col("start").list.len(), dtype=pl.Int64))
        .explode(["start", "chunk_index"])
        .with_columns(end=pl.min_horizontal(pl.col("start") + config.chunk_size, length))
        .select(
            *keep,
            "chunk_index",
            pl.col(config.column).str.slice(pl.col("start"), pl.col("end") - pl.col("start")).alias("chunk"),
            "start",
            "end",
        )
    )


def _chunk_slice(
    frame: pl.DataFrame, keep: list[str], config: ChunkTextConfig, patterns: list[re.Pattern]
) -> pl.DataFrame:
    spans = [
        chunk_spans(t, config.chunk_size, config.overlap, config.unit, patterns) if t else []
        for t in frame[config.column]
    ]
    return (
        frame.with_columns(
            pl.Series("start", [[s for s, _ in sp] for sp in spans], dtype=pl.List(pl.Int64)),
            pl.Series("end", [[e for _, e in sp] for sp in spans], dtype=pl.List(pl.Int64)),
        )
        .filter(pl.col("start").list.len() > 0)
        .with_columns(chunk_index=pl.int_ranges(0, pl.col("start").list.len(), dtype=pl.Int64))
        .explode(["start", "end", "chunk_index"])
        .select(
            *keep,
            "chunk_index",
            pl.col(config.column).str.slice(pl.col("start"), pl.col("end") - pl.col("start")).alias("chunk"),
            "start",
            "end",
        )
    )


def chunk_spans(text: str, size: int, overlap: int, unit: str, patterns: list[re.Pattern]) -> list[tuple[int, int]]:
    """(start, end) character offsets of each chunk of `text`.

    A chunk holds at most `size` units. It ends at the last match of the most preferred separator
    that leaves it at least half full (else at the size limit); the next chunk starts `overlap`
    units before that end, at a word start, and always after the previous chunk's start.
    """
    stop = len(text.rstrip())
    spans: list[tuple[int, int]] = []
    if unit == "words":
        words = [m.span() for m in re.finditer(r"\S+", text)]
        starts, ends = [w[0] for w in words], [w[1] for w in words]
        first = 0
        while first < len(starts):
            last = first + size - 1
            if last >= len(starts) - 1:
                spans.append((starts[first], stop))
                break
            end = _best_break(text, patterns, ends[first + max(size // 2, 1) - 1], ends[last]) or ends[last]
            end = starts[first] + len(text[starts[first] : end].rstrip())
            spans.append((starts[first], end))
            inside = bisect_left(starts, end) - 1  # the chunk's last word
            first = max(inside + 1 - overlap, first + 1)
        return spans
    pos = _skip_space(text, 0)
    while pos < stop:
        if pos + size >= stop:
            spans.append((pos, stop))
            break
        end = _best_break(text, patterns, pos + max(size // 2, 1), pos + size) or pos + size
        end = pos + len(text[pos:end].rstrip()) or end
        spans.append((pos, end))
        nxt = end - overlap
        if nxt <= pos:
            nxt = pos + 1
        if 0 < nxt and not text[nxt - 1].isspace():  # mid-word: move on to the next word start in the chunk
            nxt = next((i for i in range(nxt, end) if text[i].isspace()), nxt)
        pos = _skip_space(text, nxt)
    return spans


def _best_break(text: str, patterns: list[re.Pattern], lower: int, limit: int) -> int | None:
    """Where the chunk may end: after the non-space part of the last match of the most preferred separator
    that has one ending in [lower, limit] ("." of ". ", before a paragraph's blank line). A match may run past
    `limit` (the blank after the chunk's last word), so look a little further than it."""
    for pattern in patterns:
        best = None
        for match in pattern.finditer(text, lower, limit + LOOKAHEAD):
            end = match.start() + len(match.group().rstrip())
            if end > limit:
                break
            best = end
        if best is not None:
            return best
    return None


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
