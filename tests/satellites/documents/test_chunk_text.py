"""chunk-text: bounded, overlapping chunks that prefer paragraph and sentence breaks; other columns kept."""

from __future__ import annotations

import random
import re

import dagster as dg
import polars as pl
import pytest
from pydantic import ValidationError

from exo_dagster import compile_cluster, parse_cluster
from satellites.documents.chunk_text import ChunkTextConfig, chunk_spans, chunk_text

TEXT = (
    "Cats sleep a lot. They like warm places.\n\n"
    "Dogs bark at strangers. Dogs also fetch sticks when asked nicely.\n\n"
    "Birds sing."
)


def test_prefers_paragraph_then_sentence_breaks_and_keeps_other_columns(make_ctx, stored):
    table = stored(
        "docs", pl.DataFrame({"doc": ["animals", "empty", "none"], "text": [TEXT, "   ", None], "page": [1, 2, 3]})
    )
    out = chunk_text(make_ctx(previous=table), ChunkTextConfig(chunk_size=60, overlap=10))
    assert out.columns == ["doc", "page", "chunk_index", "chunk", "start", "end"]
    assert out["chunk"].to_list() == [
        "Cats sleep a lot. They like warm places.",  # ends at the paragraph break
        "places.\n\nDogs bark at strangers.",  # starts ~10 chars back, at a word; a sentence end
        "strangers. Dogs also fetch sticks when asked nicely.",
        "nicely.\n\nBirds sing.",
    ]
    wider = chunk_text(make_ctx(previous=table), ChunkTextConfig(chunk_size=80, overlap=10))["chunk"].to_list()
    assert (
        wider[1] == "places.\n\nDogs bark at strangers. Dogs also fetch sticks when asked nicely."
    )  # paragraph beats sentence
    narrow = chunk_text(make_ctx(previous=table), ChunkTextConfig(chunk_size=70, overlap=10))["chunk"].to_list()
    assert (
        narrow[1] == "places.\n\nDogs bark at strangers. Dogs also fetch sticks when asked"
    )  # no break in the 2nd half: a word
    assert out["chunk_index"].to_list() == [0, 1, 2, 3] and set(out["doc"]) == {"animals"} and set(out["page"]) == {1}
    assert all(TEXT[s:e] == c for s, e, c in out.select("start", "end", "chunk").rows())


def test_words_unit_counts_words():
    text = " ".join(f"w{i}" for i in range(25))
    spans = chunk_spans(text, 10, 3, "words", ChunkTextConfig(unit="words", chunk_size=10, overlap=3).patterns())
    chunks = [text[s:e].split() for s, e in spans]
    assert chunks[0] == [f"w{i}" for i in range(10)]
    assert chunks[1][:3] == ["w7", "w8", "w9"] and chunks[-1][-1] == "w24"
    assert all(len(c) <= 10 for c in chunks)


def test_no_separators_is_exact_windows_in_polars(make_ctx, stored):
    text = "héllo wörld, ünïcode ✓ " * 3  # offsets are characters, not bytes
    table = stored("t", pl.DataFrame({"id": [7, 8], "body": [text, ""]}))
    out = chunk_text(
        make_ctx(input={"table": table}), ChunkTextConfig(column="body", chunk_size=20, overlap=5, separators=[])
    )
    assert (
        len(text) == 69
        and out["start"].to_list() == [0, 15, 30, 45, 60]
        and out["end"].to_list() == [20, 35, 50, 65, 69]
    )
    assert out["chunk"].to_list() == [text[s:e] for s, e in zip(out["start"], out["end"])]
    assert out["id"].to_list() == [7] * 5 and out["chunk_index"].to_list() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("unit", ["chars", "words"])
def test_random_texts_hold_the_invariants(unit):
    rng = random.Random(42)
    vocabulary = ["alpha", "be", "c", "delta.", "echo,", "foxtrot!", "\n", "\n\n", "golf?", "hotel"]
    for _ in range(200):
        text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 120)))
        size = rng.randint(3, 60)
        overlap = rng.randint(0, size - 1)
        config = ChunkTextConfig(chunk_size=size, overlap=overlap, unit=unit)
        spans = chunk_spans(text, size, overlap, unit, config.patterns())
        covered = set()
        for k, (start, end) in enumerate(spans):
            chunk = text[start:end]
            assert chunk.strip() == chunk and chunk, (text, size, overlap, spans)
            assert (len(chunk) if unit == "chars" else len(chunk.split())) <= size
            if k:
                assert start > spans[k - 1][0]  # always moves on
            covered.update(range(start, end))
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        assert all(i in covered for s, e in words for i in range(s, e)), (text, size, overlap, spans)


def test_bad_config_and_missing_column(make_ctx, stored):
    with pytest.raises(ValidationError, match="must be smaller than `chunk-size`"):
        ChunkTextConfig.model_validate({"chunk-size": 10, "overlap": 10})
    table = stored("t", pl.DataFrame({"body": ["x"]}))
    with pytest.raises(ValueError, match="no `text` column .*set `column:`"):
        chunk_text(make_ctx(previous=table), ChunkTextConfig())
    with pytest.raises(ValueError, match="needs a table"):
        chunk_text(make_ctx(), ChunkTextConfig())


def test_in_a_compiled_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    text = """\
version: 0.0.1b
cluster:
  identifier: test/chunks
  satellites:
    - name: Texts
      uses: satellite/exospherehost/sql
      identifier: texts
      config: {query: "select 'a' as doc, repeat('word ', 50) as text"}
    - name: Chunk
      uses: satellite/exospherehost/chunk-text
      identifier: chunks
      config: {chunk-size: 10, overlap: 2, unit: words}
      input:
        table: ${{ satellites.texts.output }}
"""
    cluster = parse_cluster(text, str(tmp_path / "cluster.yaml"))
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    assert result.success
    out = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__chunks" / "chunks.parquet")
    assert out.columns == ["doc", "chunk_index", "chunk", "start", "end"]
    assert out["chunk"].to_list()[0] == " ".join(["word"] * 10)
    assert out.height == 6 and out["chunk"].str.split(" ").list.len().max() == 10  # 50 words, step 8
