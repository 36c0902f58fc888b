"""Per-row work inside one step: batched, concurrent, cached, with per-row errors collected.

A million rows is a million calls of a function, never a million Dagster ops. Each finished
row is committed to the row cache before the next batch, so a re-run skips it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import polars as pl

from exo_dagster.sdk.row_cache import RowCache, row_key

ERROR_COLUMN = "_error"
KEY_COLUMN = "_row_key"


class RowFailed(RuntimeError):
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
        return {"exo/rows": self.rows, "exo/rows_cached": self.cached, "exo/rows_computed": self.computed,
                "exo/rows_failed": self.failed, "exo/rows_per_second": round(self.computed / self.seconds, 1) if self.seconds else 0.0}


def _batches(rows: pl.DataFrame | pl.LazyFrame, size: int) -> Iterator[pl.DataFrame]:
    if isinstance(rows, pl.LazyFrame):
        rows = rows.collect(engine="streaming")
    yield from rows.iter_slices(size)


def map_rows(
    fn: Callable[[dict, str], Any],
    rows: pl.DataFrame | pl.LazyFrame,
    *,
    identity: tuple[str, str, Mapping[str, Any]],
    step: str,
    cache: RowCache | None,
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
    satellite_id, version, config = identity
    is_async = inspect.iscoroutinefunction(fn)
    batch_size = batch_size or max(concurrency * 16, 256)
    out: list[dict] = []
    started = time.perf_counter()
    pool = None if is_async else ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        for batch in _batches(rows, batch_size):
            records = batch.to_dicts()
            keys = [row_key(satellite_id, version, config, r) for r in records]
            done = cache.get_many(keys) if cache is not None else {}
            todo = [i for i, k in enumerate(keys) if k not in done]
            results: dict[int, dict] = {}

            def finish(i: int, value: Any, error: str | None) -> None:
                if error is None:
                    result = value
                    stats.computed += 1
                else:
                    error = mask(error) if mask is not None else error
                    result = {ERROR_COLUMN: error}
                    stats.failed += 1
                    if len(stats.errors) < 20:
                        stats.errors.append(f"row {stats.rows + i}: {error}")
                results[i] = result

            calls = [(i, records[i], keys[i]) for i in todo]
            if calls:
                work = _committing(fn, cache, step, is_async, mask)
                (_run_async(work, calls, concurrency, finish) if is_async else _run_threads(pool, work, calls, finish))
            for i, key in enumerate(keys):
                if i in results:
                    out.append({KEY_COLUMN: key, **results[i]})
                else:
                    stats.cached += 1
                    out.append({KEY_COLUMN: key, **done[key]})
            stats.rows += len(records)
            if on_row_error == "fail" and stats.failed:
                raise RowFailed(f"{stats.failed} row(s) failed in step `{step}` (on-row-error: fail); first: {stats.errors[0]}")
    finally:
        stats.seconds += time.perf_counter() - started
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    frame = pl.DataFrame(out, infer_schema_length=None) if out else pl.DataFrame({KEY_COLUMN: []}, schema={KEY_COLUMN: pl.Utf8})
    if ERROR_COLUMN not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(ERROR_COLUMN))
    return frame


def _as_result(value: Any) -> dict:
    return value if isinstance(value, dict) else {"result": value}


def _committing(fn, cache: RowCache | None, step: str, is_async: bool, mask: Callable[[Any], Any] | None = None):
    """Wrap `fn` so each row's result is committed by the worker that computed it, the moment it returns:
    a crash anywhere else cannot lose a finished row. The result is masked first (secrets never cached)."""
    clean = mask or (lambda value: value)
    if is_async:
        async def run_async(row, key):
            result = clean(_as_result(await fn(row, key)))
            if cache is not None:
                cache.put(key, step, result)
            return result
        return run_async

    def run(row, key):
        result = clean(_as_result(fn(row, key)))
        if cache is not None:
            cache.put(key, step, result)
        return result
    return run


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _run_threads(pool: ThreadPoolExecutor, fn, calls, finish) -> None:
    futures = {pool.submit(fn, row, key): i for i, row, key in calls}
    for future in as_completed(futures):
        error = future.exception()
        if error is not None and not isinstance(error, Exception):
            raise error  # KeyboardInterrupt, SystemExit: a crash, not a row's failure
        finish(futures[future], None if error else future.result(), _describe(error) if error else None)


def _run_async(fn, calls, concurrency: int, finish) -> None:
    async def main() -> None:
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(i, row, key):
            async with gate:
                try:
                    value = await fn(row, key)
                except Exception as exc:  # noqa: BLE001 - a row's failure is data, not a crash
                    finish(i, None, _describe(exc))
                else:
                    finish(i, value, None)

        await asyncio.gather(*(one(*c) for c in calls))

    asyncio.run(main())
