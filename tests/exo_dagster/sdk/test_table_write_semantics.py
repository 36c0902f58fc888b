"""table_write's rules for append/upsert: what `_fits` accepts is really lossless (fuzz), what `reconcile` refuses
names the column and both types, and `key_problem` finds every missing, null or repeated key."""

from __future__ import annotations

import random

import polars as pl
import pytest

from exo_dagster.sdk.table_write import WriteRefused, _fits, key_problem, reconcile

NUMERIC = [pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64, pl.Float32, pl.Float64]
SAMPLES = 3000


def _values(rng: random.Random, dtype) -> list:
    """Values of `dtype`, biased to its edges and to the edges of narrower types."""
    if dtype.is_float():
        return [
            rng.choice([0.5, -1.25, 1e300 if dtype == pl.Float64 else 3.0e38, float(rng.randint(-99, 99))])
            for _ in range(3)
        ]
    bits = int(str(dtype())[-2:].lstrip("t")) if dtype != pl.Int8 and dtype != pl.UInt8 else 8
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if dtype.is_signed_integer() else (0, 2**bits - 1)
    edges = [low, high, 0, 1, -1, 2**24 + 1, 2**53 + 1, 127, 128, 255, 256, 32767, 32768, 2**31, 2**32]
    return [v for v in (rng.choice(edges + [rng.randint(low, high)]) for _ in range(3)) if low <= v <= high]


def _survives(column: pl.Series, stored) -> bool:
    try:
        return column.cast(stored, strict=True).cast(column.dtype, strict=True).equals(column)
    except pl.exceptions.PolarsError:
        return False


def test_fuzz_what_fits_survives_the_cast_unchanged():
    """0 of SAMPLES accepted columns change when cast to the stored type; every refusal of an integer column into
    an integer column has a value out of the stored range."""
    rng = random.Random(22)
    changed, refused_without_cause, accepted = [], [], 0
    for _ in range(SAMPLES):
        have, stored = rng.choice(NUMERIC), rng.choice(NUMERIC)
        column = pl.Series("c", _values(rng, have), dtype=have)
        if _fits(column, stored):
            accepted += 1
            if not _survives(column, stored):
                changed.append((have, stored, column.to_list()))
        elif have.is_integer() and stored.is_integer() and _survives(column, stored):
            refused_without_cause.append((have, stored, column.to_list()))  # (into a float: refused beyond 2**53)
    assert changed == []
    assert refused_without_cause == []
    assert accepted > SAMPLES // 4  # the fuzz exercised both outcomes


def test_entirely_null_columns_fit_anything_and_text_fits_no_number():
    assert _fits(pl.Series("c", [None, None], dtype=pl.String), pl.Int64)
    assert _fits(pl.Series("c", [], dtype=pl.String), pl.Date)
    assert not _fits(pl.Series("c", ["1"]), pl.Int64)
    assert not _fits(pl.Series("c", [1.0]), pl.Int64)


def test_reconcile_refuses_naming_every_retyped_column_or_widens_with_evolve():
    stored = {"id": pl.Int64, "amount": pl.Int64, "day": pl.Date, "gone": pl.String}
    incoming = pl.DataFrame({"id": pl.Series([1], dtype=pl.Int32), "amount": ["ten"], "day": [1.5], "new": [1]})
    with pytest.raises(WriteRefused) as caught:
        reconcile(stored, incoming, evolve=False, target="/t.parquet")
    message = str(caught.value)
    for part in (
        "/t.parquet",
        "`amount` is Int64 in the target and String in the input",
        "`day` is Date in the target and Float64 in the input",
        "schema: evolve",
    ):
        assert part in message, message
    assert "`id`" not in message  # Int32 values fit the stored Int64
    into_new, into_old = reconcile(stored, incoming.drop("day"), evolve=True, target="/t.parquet")
    assert into_new == {"id": pl.Int64} and into_old == {"amount": pl.String}
    with pytest.raises(WriteRefused, match="no common type"):
        reconcile({"s": pl.List(pl.Int64)}, pl.DataFrame({"s": [1]}), evolve=True, target="/t")


def test_reconcile_lets_an_empty_stored_column_take_the_incoming_type():
    into_new, into_old = reconcile(
        {"a": pl.String, "b": pl.Null},
        pl.DataFrame({"a": [1], "b": [2.5]}),
        evolve=False,
        target="/t.csv",
        empty=frozenset({"a"}),
    )
    assert into_new == {} and into_old == {"a": pl.Int64, "b": pl.Float64}


def test_key_problem_finds_missing_null_and_repeated_keys():
    frame = pl.DataFrame({"id": [1, 2, 2, 3, 3, 3], "day": ["a", "b", "b", "c", "c", None]})
    assert "`sku` is not in the input" in key_problem(frame, ["id", "sku"], "the input")
    assert "`day` is null in 1 row(s)" in key_problem(frame, ["id", "day"], "the input")
    repeated = key_problem(frame.drop_nulls(), ["id", "day"], "x")
    assert "id=2, day='b' appears 2 times (2 key value(s) repeat)" in repeated
    assert key_problem(frame.drop_nulls(), ["id", "day"], "x", repeats=False) is None
    assert key_problem(frame.unique(["id"]).drop_nulls(), ["id"], "x") is None
