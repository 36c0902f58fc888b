"""Per-row work inside one step: batched, concurrent, cached, with per-row errors collected.

A million rows is a million calls of a function, never a million Dagster ops. Rows stream through
in batches (never a million Python dicts at once); `concurrency` workers (threads, or coroutines on
one event loop kept for the whole map) pull rows from the batch, and each finished row is queued to
the row cache and group-committed (sdk/internal/row_writer.py), so a re-run skips it. Each batch's results
become one Polars frame at once.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from exo_dagster import keys
from exo_dagster.errors import TransientError
from exo_dagster.sdk.internal.row_store import RowStore
from exo_dagster.sdk.internal.row_writer import RowWriter
from exo_dagster.sdk.row_cache import row_keyer

ERROR_COLUMN = "_error"
KEY_COLUMN = "_row_key"


class RowFailed(TransientError, RuntimeError):
    """A row failed under `on-row-error: fail`; finished rows are already cached."""


@dataclass
class RowStats:
    rows: int = 0
    cached: int = 0
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            keys.ROWS: self.rows,
            keys.ROWS_CACHED: self.cached,
            keys.ROWS_COMPUTED: self.computed,
            keys.ROWS_FAILED: self.failed,
            keys.ROWS_PER_SECOND: round(self.computed / self.seconds, 1) if self.seconds else 0.0,
        }


class _Failed:
    """A row's failure, as the worker saw it (masked and counted by the step's thread)."""

    __slots__ = ("error",)

    def __init__(self, error: str):
        self.error = error


def _batches(rows: pl.DataFrame | pl.LazyFrame, size: int) -> Iterator[pl.DataFrame]:
    """`size`-row slices; a LazyFrame is streamed, never collected whole."""
    if isinstance(rows, pl.LazyFrame):
        for chunk in rows.collect_batches(chunk_size=size):
            yield from chunk.iter_slices(size)
        return
    yield from rows.iter_slices(size)


def map_rows(
    fn: Callable[[dict, str], Any],
    rows: pl.DataFrame | pl.LazyFrame,
    *,
    identity: tuple[str, str, Mapping[str, Any]],
    step: str,
    cache: RowStore | None,
    concurrency: int = 8,
    on_row_error: str = "collect",
    batch_size: int | None = None,
    stats: RowStats | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> pl.DataFrame:
    """Call `fn(row, key)` for every row; returns one result row per input row, in order.

    `identity` is (satellite id, version, config): with the row it makes the cache key, which
    `fn` also receives as an idempotency key. A result is a dict of output columns (or a value,
    stored as column `result`); an exception becomes the row's `_error` unless on_row_error=fail.
    """
    stats = stats if stats is not None else RowStats()
    key_of = row_keyer(*identity)
    is_async = inspect.iscoroutinefunction(fn)
    workers = max(1, concurrency)
    batch_size = batch_size or max(workers * 64, 2048)
    frames: list[pl.DataFrame] = []
    started = time.perf_counter()
    writer = RowWriter(cache, step) if cache is not None else None
    computed: set[int] = set()  # hashes of the keys this map computed: a repeated row is taken from the cache
    work = _committing(fn, writer, is_async, mask)
    runner = _AsyncRunner(work, workers) if is_async else _ThreadRunner(work, workers)
    try:
        for batch in _batches(rows, batch_size):
            records = batch.to_dicts()
            row_keys = [key_of(r) for r in records]
            if writer is not None and cache is not None and not computed.isdisjoint(map(hash, row_keys)):
                writer.flush()  # a row this map already computed again: make it visible to the look-up
                cache.merge()
            done = cache.get_many(row_keys) if cache is not None else {}
            todo = [i for i, k in enumerate(row_keys) if k not in done]
            if writer is not None:
                computed.update(hash(row_keys[i]) for i in todo)
            results: list[Any] = [None] * len(records)
            if todo:
                runner.run([(i, records[i], row_keys[i]) for i in todo], results)
            values = []
            for i, key in enumerate(row_keys):
                value = results[i]
                if value is None:
                    stats.cached += 1
                    values.append(done[key])
                elif isinstance(value, _Failed):
                    error = mask(value.error) if mask is not None else value.error
                    stats.failed += 1
                    if len(stats.errors) < 20:
                        stats.errors.append(f"row {stats.rows + i}: {error}")
                    values.append({ERROR_COLUMN: error})
                else:
                    stats.computed += 1
                    values.append(value)
            frames.append(_frame(row_keys, values))
            stats.rows += len(records)
            if on_row_error == "fail" and stats.failed:
                if writer is not None:
                    writer.flush()
                raise RowFailed(
                    f"{stats.failed} row(s) failed in step `{step}` (on-row-error: fail); first: {stats.errors[0]}"
                )
    finally:
        try:
            runner.close()
        finally:
            if writer is not None:
                writer.close()  # finished rows are committed even when the step is going down
            stats.seconds += time.perf_counter() - started
    frames = [f for f in frames if f.height]
    frame = (
        pl.concat(frames, how="diagonal_relaxed")
        if frames
        else pl.DataFrame({KEY_COLUMN: []}, schema={KEY_COLUMN: pl.Utf8})
    )
    if ERROR_COLUMN not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(ERROR_COLUMN))
    return frame


def _frame(row_keys: list[str], values: list[dict]) -> pl.DataFrame:
    """One batch's results as a frame: the row key first, then the result columns."""
    frame = pl.DataFrame({KEY_COLUMN: row_keys}, schema={KEY_COLUMN: pl.Utf8})
    columns = pl.DataFrame(values, infer_schema_length=None) if values else None
    if columns is not None and columns.width:
        frame = frame.hstack(columns.drop(KEY_COLUMN, strict=False))
    return frame


def _as_result(value: Any) -> dict:
    return value if isinstance(value, dict) else {"result": value}


def _committing(fn, writer: RowWriter | None, is_async: bool, mask: Callable[[Any], Any] | None = None):
    """Wrap `fn` so each row's result is queued to the row cache by the worker that computed it, the
    moment it returns (committed within ~100 ms, and at the latest when the map ends, even by a crash
    of the step). The result is masked first (secrets never cached)."""
    clean = mask or (lambda value: value)
    put = writer.put if writer is not None else (lambda key, result: None)
    if is_async:

        async def run_async(row, key):
            result = clean(_as_result(await fn(row, key)))
            put(key, result)
            return result

        return run_async

    def run(row, key):
        result = clean(_as_result(fn(row, key)))
        put(key, result)
        return result

    return run


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _ThreadRunner:
    """`workers` threads, kept for the whole map, each pulling the next row of the batch: no future
    per row, and the pool is not rebuilt per batch."""

    def __init__(self, work, workers: int):
        self.work, self.workers = work, workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exo-row")
        self.stop = threading.Event()

    def run(self, calls: list, results: list) -> None:
        work, stop = self.work, self.stop
        take = iter(calls).__next__  # a C iterator: one row to one worker, under the GIL

        def drain() -> None:
            while not stop.is_set():
                try:
                    i, row, key = take()
                except StopIteration:
                    return
                try:
                    results[i] = work(row, key)
                except Exception as exc:
                    results[i] = _Failed(_describe(exc))
                except BaseException:
                    stop.set()  # KeyboardInterrupt, SystemExit: a crash, not a row's failure
                    raise

        futures = [self.pool.submit(drain) for _ in range(min(self.workers, len(calls)))]
        crash = None
        for future in futures:
            error = future.exception()
            if error is not None and crash is None:
                crash = error
        if crash is not None:
            raise crash

    def close(self) -> None:
        """Rows in flight finish (and are committed); no worker takes another row. The step's thread may be
        leaving by an exception (a step timeout's alarm, Ctrl-C) while the workers are mid-batch."""
        self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _AsyncRunner:
    """`workers` coroutines on one event loop kept for the whole map (so a client's connection pool
    lives across batches), each awaiting the next row: no task or semaphore per row."""

    def __init__(self, work, workers: int):
        self.work, self.workers = work, workers
        self.runner = asyncio.Runner()

    def run(self, calls: list, results: list) -> None:
        work, take = self.work, iter(calls).__next__

        async def drain() -> None:
            while True:
                try:
                    i, row, key = take()
                except StopIteration:
                    return
                try:
                    results[i] = await work(row, key)
                except Exception as exc:
                    results[i] = _Failed(_describe(exc))

        async def main() -> None:
            await asyncio.gather(*(drain() for _ in range(min(self.workers, len(calls)))))

        self.runner.run(main())

    def close(self) -> None:
        self.runner.close()
