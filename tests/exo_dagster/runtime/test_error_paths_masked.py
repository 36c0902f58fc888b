"""Every error path is masked: a secret in an exception's text, its chain, a Failure's metadata or a table raised
or written anywhere in a step (compute, output writing, a fan-out chunk, a failure section) reaches no store.

Fast property tests of `mask_exception` and `mask_output` over generated secrets, then one real in-process run
(and its failure section) whose steps fail in each of those places, after which every store is scanned."""

from __future__ import annotations

import base64
import json
import logging
import random
import traceback
import urllib.parse
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._utils.error import serializable_error_info_from_exc_info

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.sdk.internal import leak_guard
from exo_dagster.sdk.masking import MASK, MaskedError, mask_exception, mask_output
from exo_dagster.sections import run_end

SECRET = 'sk-live/Zq9x+Ab"cd\\ef 0123456789-ABCDEFghij'


def needles(secret: str) -> dict[str, bytes]:
    """The secret, its encodings (computed here, not with the masker under test) and its 12-char fragments."""
    raw = secret.encode()
    found = {
        "raw": raw,
        "url": urllib.parse.quote(secret, safe="").encode(),
        "url-path": urllib.parse.quote(secret).encode(),
        "url-plus": urllib.parse.quote_plus(secret).encode(),
        "json": json.dumps(secret)[1:-1].encode(),
        "base64": base64.b64encode(raw).rstrip(b"="),
        "base64-basic": base64.b64encode(b"user:" + raw)[8:-8],
        "hex": raw.hex().encode(),
        "repr": repr(secret)[1:-1].encode(),
    }
    found.update({f"fragment@{i}": raw[i : i + 12] for i in range(0, len(raw) - 12, 3)})
    return {name: needle for name, needle in found.items() if len(needle) >= 8}


def hits(data: bytes | str, secret: str) -> list[str]:
    data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return [name for name, needle in needles(secret).items() if needle in data]


def _cells(frame: pl.DataFrame) -> str:
    """A table's column names and every cell as text (bytes decoded, lists and structs walked)."""

    def text(value) -> str:
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, list):
            return "\n".join(map(text, value))
        if isinstance(value, dict):
            return "\n".join(text(k) + "\n" + text(v) for k, v in value.items())
        return str(value)

    return "\n".join(frame.columns) + "\n" + "\n".join(text(row) for row in frame.to_dicts())


def _stored(exc: BaseException) -> str:
    """What Dagster keeps of an exception (its serialized error info, chain included) and what a terminal shows."""
    info = serializable_error_info_from_exc_info((type(exc), exc, exc.__traceback__))
    return dg.serialize_value(info) + "".join(traceback.format_exception(exc))


# -- mask_exception: every kind of exception, every place in its chain ----------------------------------------------


class _OwnStr(Exception):
    """A library error whose text is computed from a private attribute (in-place masking cannot reach it)."""

    def __init__(self, secret: str):
        super().__init__()
        self._reversed = secret[::-1]

    def __str__(self) -> str:
        return f"request failed for {self._reversed[::-1]}"


def _duckdb_error(secret: str) -> BaseException:
    try:
        duckdb.sql("select cast(? as int)", params=[secret]).fetchall()
    except duckdb.Error as exc:
        return exc
    raise AssertionError("the cast did not fail")


def _polars_error(secret: str) -> BaseException:
    try:
        pl.LazyFrame({"v": [secret]}).select(pl.col("v").cast(pl.Int64)).collect()
    except pl.exceptions.PolarsError as exc:
        return exc
    raise AssertionError("the cast did not fail")


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def _make(kind: str, secret: str, rng: random.Random) -> BaseException:
    text = rng.choice(
        [
            secret,
            f"token={secret}",
            f"GET https://h/x?k={urllib.parse.quote(secret, safe='')}",
            json.dumps({"auth": secret}),
            base64.b64encode(f"user:{secret}".encode()).decode(),
        ]
    )
    if kind == "plain":
        return _raised(ValueError(text))
    if kind == "oserror":
        return _raised(FileNotFoundError(2, "No such file", f"/data/{secret}/x.parquet"))
    if kind == "own-str":
        return _raised(_OwnStr(secret))
    if kind == "duckdb":
        return _duckdb_error(secret)
    if kind == "polars":
        return _polars_error(secret)
    if kind == "note":
        exc = RuntimeError("clean text")
        exc.add_note(f"while calling with {text}")
        return _raised(exc)
    if kind == "failure":
        return _raised(
            dg.Failure(
                description=f"refused: {text}",
                metadata={
                    "token": text,
                    "url": dg.MetadataValue.url(f"https://h/{secret}"),
                    "json": dg.MetadataValue.json({"a": [text]}),
                    "md": dg.MetadataValue.md(f"`{text}`"),
                    "path": dg.MetadataValue.path(f"/x/{secret}"),
                    "n": 3,
                },
            )
        )
    if kind == "cause":
        inner = _make(rng.choice(BASE_KINDS), secret, rng)
        try:
            raise RuntimeError("the client broke") from inner
        except RuntimeError as exc:
            return exc
    if kind == "context":
        inner = _make(rng.choice(BASE_KINDS), secret, rng)
        try:
            raise inner
        except BaseException:
            try:
                raise KeyError("while handling it")
            except KeyError as exc:
                return exc
    raise AssertionError(kind)


BASE_KINDS = ["plain", "oserror", "own-str", "duckdb", "polars", "note", "failure"]
KINDS = BASE_KINDS + ["cause", "context"]
ALPHABET = "abcXYZ0189-_/+=:.\"'\\ %$€é\t"


def _secret(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(12, 40)))


SECRETS, ROUNDS = 40, 3  # a Masker costs ~50 ms to build: a few secrets, each in many exceptions


@pytest.mark.slow
def test_mask_exception_leaves_no_secret_in_what_dagster_stores_of_any_exception():
    rng = random.Random(21)
    cases = leaked = 0
    for _ in range(SECRETS):
        secret = _secret(rng)
        for kind in KINDS * ROUNDS:
            exc = _make(kind, secret, rng)
            before = bool(hits(_stored(exc), secret))
            clean = mask_exception(exc, [secret])
            after = hits(_stored(clean), secret)
            cases += 1
            leaked += bool(after)
            assert not after, (kind, secret, after, _stored(clean)[:2000])
            assert before  # the case did put the secret where Dagster or a terminal would show it
            if kind in ("plain", "oserror", "duckdb", "polars", "failure"):
                assert clean is exc  # masked in place: its type still decides retries and the error kind
            if kind == "failure":
                assert isinstance(clean, dg.Failure) and MASK in clean.description and clean.metadata["n"].value == 3
    assert (cases, leaked) == (SECRETS * ROUNDS * len(KINDS), 0)


def test_an_exception_without_a_secret_is_left_exactly_as_it_was():
    rng = random.Random(5)
    for kind in KINDS:
        exc = _make(kind, "sk-the-secret-value", rng)
        text = _stored(exc)
        assert mask_exception(exc, ["QQQQ-unrelated-7777"]) is exc and _stored(exc) == text


def test_an_exception_masked_by_replacement_keeps_its_class_name_traceback_and_cleaned_chain():
    inner = _raised(ValueError(f"inner {SECRET}"))
    try:
        raise _OwnStr(SECRET) from inner
    except _OwnStr as caught:
        original, clean = caught, mask_exception(caught, [SECRET])
    assert isinstance(clean, MaskedError) and str(clean).startswith("_OwnStr: request failed for ")
    assert clean.__traceback__ is original.__traceback__ and clean.__cause__ is inner and MASK in str(inner)


def test_the_guard_masks_what_leaves_it_and_never_shows_the_raw_exception_as_context(capfd):
    with pytest.raises(MaskedError) as info:
        with leak_guard.masked([SECRET]):
            print(f"about to fail with {SECRET}")
            logging.getLogger("exo.test").warning("token %s", SECRET)
            raise _OwnStr(SECRET)
    assert info.value.__suppress_context__ and not hits(_stored(info.value), SECRET)
    out = capfd.readouterr()
    assert f"about to fail with {MASK}" in out.out and not hits(out.out + out.err, SECRET)
    with pytest.raises(duckdb.ConversionException) as same:  # masked in place: the same exception, same type
        with leak_guard.masked([SECRET]):
            raise _duckdb_error(SECRET)
    assert MASK in str(same.value) and not hits(_stored(same.value), SECRET)


# -- mask_output: every column type that can carry text ----------------------------------------------------------


def test_mask_output_masks_nested_binary_categorical_cells_and_column_names():
    rng = random.Random(7)
    for _ in range(15):
        secret = _secret(rng)
        frame = pl.DataFrame(
            {
                "s": [secret, "x"],
                "l": [[secret, "a"], ["b"]],
                "st": [{"a": f"k={secret}", "n": 1}, {"a": "q", "n": 2}],
                "b": [secret.encode(), b"zz"],
                f"col {secret}": [1, 2],
                "c": pl.Series([secret, "y"], dtype=pl.Categorical),
                "e": pl.Series(["p", "q"], dtype=pl.Enum(["p", "q", secret])),
                "n": [1.5, 2.5],
            }
        )
        for value in (frame, frame.lazy()):
            out = mask_output(value, [secret])
            out = out.collect() if isinstance(out, pl.LazyFrame) else out
            path = Path(f"/tmp/exo-mask-{rng.random()}.parquet")
            try:
                out.write_parquet(path)
                assert not hits(path.read_bytes(), secret) and not hits(_cells(pl.read_parquet(path)), secret)
            finally:
                path.unlink(missing_ok=True)
            assert out.height == 2 and out["n"].to_list() == [1.5, 2.5] and out["l"][1].to_list() == ["b"]


# -- the IO manager: writing an output is masked with its run's secrets ------------------------------------------

PATH_SECRET = "tok-9f8e7d6c5b4a3210"  # one that can stand in a file name (a signed URL's token, say)


@pytest.fixture
def manager(tmp_path, monkeypatch):
    from exo_dagster.storage.io_manager import ExoParquetIOManager

    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EXO_CATALOG", raising=False)
    monkeypatch.delenv("EXO_OUTPUTS", raising=False)
    leak_guard.remember("run-with-secrets", [SECRET, PATH_SECRET])
    return ExoParquetIOManager().create_io_manager(None)


def _output(name: str) -> dg.OutputContext:
    return dg.build_output_context(
        run_id="run-with-secrets", name="result", step_key=name, asset_key=dg.AssetKey(["test", "io", name])
    )


def test_an_output_that_fails_while_it_is_written_raises_masked(manager):
    lazy = pl.LazyFrame({"v": [SECRET]}).select(pl.col("v").cast(pl.Int64))
    with _output("lazy") as context, pytest.raises(dg.Failure) as info:
        manager.handle_output(context, lazy)
    assert MASK in info.value.description and not hits(_stored(info.value), SECRET)


def test_a_reference_whose_source_path_holds_a_secret_is_stored_as_a_copy(manager, tmp_path):
    from exo_dagster.sdk.table import StoredTable

    source = tmp_path / f"signed-{PATH_SECRET}" / "part.parquet"
    source.parent.mkdir()
    pl.DataFrame({"v": [1, 2]}).write_parquet(source)
    with _output("events") as context:
        manager.handle_output(context, StoredTable(str(source)))
        metadata = dg.serialize_value(context.get_logged_metadata())
    out = tmp_path / "data" / "outputs" / "test__io"
    assert sorted(p.name for p in out.iterdir()) == ["events.parquet"]  # no .ref.json naming the source
    assert pl.read_parquet(out / "events.parquet")["v"].to_list() == [1, 2]
    assert "dagster/row_count" in metadata and not hits(metadata, PATH_SECRET)
    plain = tmp_path / "plain.parquet"
    pl.DataFrame({"v": [3]}).write_parquet(plain)
    with _output("plain") as context:
        manager.handle_output(context, StoredTable(str(plain)))
    assert (out / "plain.parquet.ref.json").exists()  # a source path without a secret is still referenced


# -- one real run: a failure in each place, then every store scanned ---------------------------------------------


class FailConfig(SatelliteConfig):
    how: str


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/fails", config=FailConfig, registry=extra)
    def fails(ctx: StepContext, config: FailConfig):
        token = ctx.secrets["TOKEN"]
        if config.how == "failure":  # a satellite's own Failure: description and metadata
            raise dg.Failure(
                description=f"the alert service refused {token}",
                metadata={
                    "token": token,
                    "body": dg.MetadataValue.json({"auth": token}),
                    "url": dg.MetadataValue.url(f"https://hooks.example/{token}"),
                },
            )
        if config.how == "chain":  # a bug whose cause and notes hold it
            try:
                {}[token]
            except KeyError as exc:
                error = AttributeError("the client broke")
                error.add_note(f"calling with {token}")
                raise error from exc
        if config.how == "lazy":  # fails only when the IO manager (or a fan-out chunk) writes it
            return pl.LazyFrame({"v": [token]}).select(pl.col("v").cast(pl.Int64))
        if config.how == "noisy":  # prints and logs while its output is written, then succeeds

            def shout(series: pl.Series) -> pl.Series:
                print(f"writing with {token}")
                logging.getLogger("exo.test.noisy").warning("token %s", token)
                return series

            return pl.LazyFrame({"v": [1, 2]}).with_columns(pl.col("v").map_batches(shout, return_dtype=pl.Int64))
        raise AssertionError(config.how)

    return builtin_registry().merged(extra)


def _step(name: str, how: str, extra: str = "") -> str:
    return (
        f"    - name: {name}\n      uses: satellite/test/fails\n      identifier: {name}\n{extra}"
        f"      config:\n        how: {how}\n        secrets:\n          - TOKEN: ${{{{ secrets.TOK }}}}\n"
    )


FAN_OUT = '      fan-out: {chunk-rows: 1}\n      input: {i: "$${{ satellites.rows.output.i }}"}\n'
CLUSTER = (
    """\
version: 0.0.1b
cluster:
  identifier: test/error-paths
  execution: dataflow
  secrets:
    - TOK: ${{ env.EXO_ERROR_PATHS_TOKEN }}
  satellites:
"""
    + _step("own_failure", "failure")
    + _step("chained", "chain")
    + _step("lazy", "lazy")
    + _step("noisy", "noisy")
    + """\
    - name: Raise
      uses: satellite/exospherehost/sql
      identifier: raised
      config: {query: "select error('x' || ${{ secrets.TOK }}) as v"}
    - name: Cast
      uses: satellite/exospherehost/sql
      identifier: cast
      config: {query: "select cast(${{ secrets.TOK }} as int) as v"}
    - name: Cells
      uses: satellite/exospherehost/sql
      identifier: cells
      config: {query: "select list_value(${{ secrets.TOK }}) as l, encode(${{ secrets.TOK }}) as b, 1 as ok"}
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: rows
      config: {query: "select 1 as i"}
"""
    + _step("chunked", "lazy", FAN_OUT)
    + """\
  failure:
    satellites:
"""
    + _step("alert", "failure")
)

FAILING = {"own_failure", "chained", "lazy", "raised", "cast", "chunked"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EXO_ERROR_PATHS_TOKEN", SECRET)
    monkeypatch.delenv("EXO_CACHE_DIR", raising=False)
    monkeypatch.delenv("EXO_CATALOG", raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path


def _failures(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the stored error of each STEP_FAILURE (message, stack and chain, as serialized)."""
    found = {}
    for record in instance.get_records_for_run(run_id=run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        found[event.step_key] = dg.serialize_value(event.step_failure_data)
    return found


@pytest.mark.slow
def test_no_secret_reaches_any_store_from_any_error_path(home, capfd):
    tmp_path = home
    cluster = parse_cluster(CLUSTER, str(tmp_path / "c.yaml"), registry=_registry())
    with dg.DagsterInstance.get() as instance:
        result = (
            compile_cluster(cluster)
            .resolve_job_def(cluster.job_name)
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not result.success
        failures = _failures(instance, result.run_id)
        failed = {key.split("__", 1)[0] for key in failures}
        assert failed == FAILING, failed
        assert all(MASK in text for text in failures.values())  # each did carry the secret, masked
        [lazy] = [text for key, text in failures.items() if key.startswith("lazy__")]
        assert "handle_output" in lazy or "handling output" in lazy  # raised while the output was written
        [chunk] = [text for key, text in failures.items() if key.startswith("chunked__")]
        assert "run_chunk" in chunk
        [section] = run_end.run_sections(instance, cluster, instance.get_run_by_id(result.run_id))
        assert not section.success
        [alert] = _failures(instance, section.run_id).values()
        assert "the alert service refused " + MASK in alert
        runs = instance.get_runs()
        stores = {
            "event log": "".join(e.to_json() for run in runs for e in instance.all_logs(run.run_id)),
            "runs (tags, config)": "".join(dg.serialize_value(run) for run in runs),
        }
    out = capfd.readouterr()
    assert f"writing with {MASK}" in out.out  # printed while the IO manager wrote its output: masked there too
    stores.update({"stdout": out.out, "stderr": out.err})
    files = [f for root in (tmp_path / "home", tmp_path / "data") for f in root.rglob("*") if f.is_file()]
    for file in files:
        store = (
            "compute logs" if "compute_logs" in file.parts else "outputs" if file.suffix == ".parquet" else file.name
        )
        data = file.read_bytes() + (
            _cells(pl.read_parquet(file)).encode("utf-8", "surrogateescape") if file.suffix == ".parquet" else b""
        )
        stores[f"{store}: {file.relative_to(tmp_path)}"] = data
    assert any("compute logs" in s for s in stores) and any(s.startswith("outputs") and "cells" in s for s in stores)
    cells = pl.read_parquet(next(f for f in files if f.name == "cells.parquet"))
    assert cells["l"][0].to_list() == [MASK] and cells["ok"].to_list() == [1]
    found = {store: hits(data, SECRET) for store, data in stores.items()}
    assert len(stores) > 20 and {store: names for store, names in found.items() if names} == {}  # 0 hits by store
