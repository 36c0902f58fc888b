"""The editor schema (`exo schema`, docs/exo-cluster.schema.json): a valid draft 2020-12 schema, the shipped
copies are what the generator writes today, every real cluster file validates, known mistakes are rejected
at their path, and it never rejects a file the checker accepts (corpus + fuzz mutants)."""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from exo_dagster import SpecError, parse_cluster
from exo_dagster.catalog import presets
from exo_dagster.catalog import schema as schemas
from exo_dagster.catalog.registry import default_registry
from exo_dagster.spec.located_yaml import load_located
from tests.exo_dagster.clusters_corpus import cluster_text, write_corpus

REPO = Path(__file__).resolve().parents[3]
SEED = REPO / "tests" / "exo_dagster" / "fixtures" / "seed.yaml"
SQL = "satellite/exospherehost/sql"
GET_FILES = "satellite/exospherehost/get-files"
CHUNK = "satellite/exospherehost/chunk-text"


def exo(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXO_")}
    return subprocess.run(
        [sys.executable, "-m", "exo_dagster.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@functools.lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    return Draft202012Validator(schemas.cluster_schema(default_registry()))


def load(text: str | bytes, name: str = "x.yaml"):
    doc, problems = load_located(text, name)
    assert not problems, problems
    return doc.data


def problems(data, check: Draft202012Validator | None = None) -> list[tuple[tuple, str]]:
    """Every error as (path, message), the errors inside failed anyOf/oneOf branches included."""
    out = []

    def walk(error):
        out.append((tuple(error.absolute_path), error.message))
        for sub in error.context or ():
            walk(sub)

    for error in (check or validator()).iter_errors(data):
        walk(error)
    return out


def cluster(*steps: str, extra: str = "") -> str:
    body = "".join(steps) or f"    - {{name: Rows, uses: {SQL}, config: {{query: select 1}}}}\n"
    return f"version: 0.0.1b\ncluster:\n  identifier: acme/t\n{extra}  satellites:\n{body}"


def step(uses: str, config: str = "", more: str = "") -> str:
    text = f"    - name: S\n      uses: {uses}\n{more}"
    return text + ("      config:\n" + "".join(f"        {line}\n" for line in config.splitlines()) if config else "")


def checker_accepts(text: str) -> bool:
    try:
        parse_cluster(text, "t.yaml", registry=default_registry())
        return True
    except SpecError:
        return False


# -- the schema itself ---------------------------------------------------------------------------
def test_the_schemas_are_valid_draft_2020_12_with_a_stable_id():
    for made in (schemas.cluster_schema(default_registry()), schemas.satellite_file_schema(default_registry())):
        Draft202012Validator.check_schema(made)
        assert made["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert made["$id"].startswith("urn:exo-dagster:schema:")
    made = schemas.cluster_schema(default_registry())
    assert made == schemas.cluster_schema(default_registry())  # deterministic
    config = made["$defs"]["config.ChunkTextConfig"]["properties"]
    assert "The most a chunk holds" in config["chunk-size"]["description"]  # hover docs from Field(description=...)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,path,command",
    [
        ((), schemas.DOCS_PATH, schemas.REGENERATE),
        (("--satellite-file",), schemas.SATELLITE_DOCS_PATH, schemas.REGENERATE_SATELLITE),
    ],
)
def test_shipped_schema_is_the_generated_one(args, path, command):
    result = exo("schema", *args)
    assert result.returncode == 0, result.stderr
    current = (REPO / path).read_text(encoding="utf-8")
    assert result.stdout == current, (
        f"{path} is out of date with the spec models and the satellites' Config models; regenerate it from the "
        f"repository root: `{command}` (or `python -m exo_dagster.cli {' '.join(command.split()[1:])}`)"
    )


@pytest.mark.slow
def test_schema_out_writes_the_file(tmp_path):
    out = tmp_path / "s.json"
    result = exo("schema", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["$id"] == schemas.CLUSTER_ID


# -- real files validate -----------------------------------------------------------------------
def test_shipped_clusters_the_seed_and_the_corpus_validate(tmp_path):
    files = [SEED, *sorted((REPO / "definitions").glob("*.yaml")), *write_corpus(tmp_path / "corpus")]
    assert len(files) >= 53
    for file in files:
        assert problems(load(file.read_bytes(), str(file))) == [], file


# -- mistakes are rejected where they are --------------------------------------------------------
def assert_rejected(text: str, path: tuple, words: str = ""):
    found = problems(load(text))
    assert found, "the schema accepted it"
    assert any(p[: len(path)] == path and words in m for p, m in found), found
    assert not checker_accepts(text), "the checker accepts it too: not a mistake"


def test_unknown_top_level_key():
    assert_rejected(cluster() + "clusterr: {}\n", (), "clusterr")
    assert_rejected(cluster(extra="  retires: 2\n"), ("cluster",), "retires")


def test_typo_in_a_config_key():
    assert_rejected(
        cluster(step(GET_FILES, "folder-pathh: data")), ("cluster", "satellites", 0, "config"), "folder-pathh"
    )
    # a templated value is checked at run time, but a misspelled key is a mistake whatever its value (the
    # checker used to skip it; this property test found it)
    assert_rejected(
        cluster(step(GET_FILES, "folder-pathh: ${{ env.D }}")), ("cluster", "satellites", 0, "config"), "folder-pathh"
    )


def test_wrong_type_in_config():
    assert_rejected(cluster(step(CHUNK, "chunk-size: big")), ("cluster", "satellites", 0, "config", "chunk-size"))
    assert_rejected(cluster(step(CHUNK, "unit: lines")), ("cluster", "satellites", 0, "config", "unit"))
    assert_rejected(cluster(extra="  retries: many\n"), ("cluster", "retries"))


def test_missing_required_fields():
    assert_rejected(
        cluster(step(SQL, "threads: 2")), ("cluster", "satellites", 0, "config"), "'query' is a required property"
    )
    assert_rejected(
        "version: 0.0.1b\ncluster:\n  identifier: acme/t\n", ("cluster",), "'satellites' is a required property"
    )
    assert_rejected(
        cluster(f"    - {{uses: {SQL}, config: {{query: select 1}}}}\n"),
        ("cluster", "satellites", 0),
        "'name' is a required property",
    )


def test_bad_version_and_identifier():
    assert_rejected(cluster().replace("0.0.1b", "0.0.2"), ("version",))
    assert_rejected(cluster().replace("acme/t", "acme"), ("cluster", "identifier"))


def test_uses_shape_and_versions():
    assert_rejected(cluster(step("sql", "query: select 1")), ("cluster", "satellites", 0, "uses"))
    assert_rejected(cluster(step(SQL + "@9.9.9", "query: select 1")), ("cluster", "satellites", 0, "uses"))
    for uses in (SQL, SQL + "@1.0.0", "satellite/exospherehost/parse-with-docling@1.0.0"):
        assert problems(load(cluster(step(uses, "query: select 1" if "sql" in uses else "format: pdf")))) == []


def test_unknown_satellite_takes_any_config():
    """A plugin not installed where the schema was made: its config is not checked (the checker says the id is
    unknown)."""
    text = cluster(step("satellite/acme/not-installed", "anything: [1, 2]\nnested: {a: b}"))
    assert problems(load(text)) == []
    assert not checker_accepts(text)


def test_templates_lax_values_and_python_spellings_are_accepted_where_the_checker_takes_them():
    cases = [
        step(CHUNK, "chunk-size: ${{ env.SIZE }}\nunit: ${{ env.UNIT }}\nseparators: ${{ env.SEPS }}"),
        step(CHUNK, 'chunk-size: "500"\noverlap: 0'),
        step(CHUNK, "chunk_size: 400"),
        step("satellite/exospherehost/read-table", 'copy: "yes"\nunion-by-name: 1'),
        step(GET_FILES, "folder-path: data\nsecrets:\n  - KEY: ${{ secrets.K }}"),
        step(SQL, "query: select 1", more="      on_row_error: fail\n      retries: '2'\n      cache: 'no'\n"),
        step("satellite/exospherehost/read-table", more="      config: null\n      input: null\n"),
    ]
    extra = "  secrets: {K: '${{ env.K }}'}\n  trigger: none\n"
    for case in cases:
        text = cluster(case, extra=extra)
        assert checker_accepts(text), text
        assert problems(load(text)) == [], text


@pytest.mark.slow
def test_a_configured_satellite_takes_only_its_open_fields(tmp_path):
    (tmp_path / "big.satellite.yaml").write_text(
        "version: 0.0.1b\nsatellite:\n  id: satellite/acme/big-chunks\n  uses: satellite/exospherehost/chunk-text\n"
        "  config: {chunk-size: 5000}\n  open: [overlap]\n"
    )
    found = presets.presets_for([tmp_path], default_registry())
    assert not found.broken
    check = Draft202012Validator(schemas.cluster_schema(found.registry))
    good = cluster(step("satellite/acme/big-chunks@1.0.0", "overlap: 10"))
    fixed = cluster(step("satellite/acme/big-chunks", "chunk-size: 10"))
    assert problems(load(good), check) == []
    found_problems = problems(load(fixed), check)
    assert any(p == ("cluster", "satellites", 0, "config") and "chunk-size" in m for p, m in found_problems), (
        found_problems
    )
    (tmp_path / "c.yaml").write_text(fixed)
    result = exo("schema", str(tmp_path))
    assert result.returncode == 0 and "satellite/acme/big-chunks" in result.stdout, result.stderr


def test_satellite_file_schema_checks_preset_files():
    check = Draft202012Validator(schemas.satellite_file_schema(default_registry()))
    good = (
        "version: 0.0.1b\nsatellite:\n  id: satellite/acme/summ\n  uses: satellite/exospherehost/llm-complete\n"
        "  config: {model: gpt-4o-mini, temperature: '${{ env.T }}'}\n  open: [system, max_tokens]\n"
    )
    assert problems(load(good), check) == []
    bad = good.replace("model:", "modle:")
    assert any(p == ("satellite", "config") and "modle" in m for p, m in problems(load(bad), check))
    assert problems(load(good.replace("open: [system", "open: [secrets")), check)
    assert problems(load(good.replace("open: [system", "open: [nope")), check)


# -- the schema never rejects what the checker accepts -------------------------------------------
LAX = [
    None,
    True,
    False,
    0,
    1,
    3,
    2.0,
    "3",
    " 4 ",
    "yes",
    "off",
    "1_000",
    "${{ env.X }}",
    "$${{ satellites.rows.output.word }}",
    "",
    "x",
    [],
    {},
    ["a"],
    {"a": 1},
    1e3,
    -1,
    "2.0",
    "1e3",
    "none",
    "manual",
]
TEMPLATE = "${{ env.X }}"


def lax_twin(value, in_config: bool):
    """A value pydantic's lax mode reads as `value` (or, in a step's config, a template)."""
    if isinstance(value, bool):
        options = ["yes", "off", "True", "n", int(value), str(int(value))]
    elif isinstance(value, int):
        options = [str(value), f" {value} ", float(value), f"{value}.0", f"{value:_}"] + (
            [bool(value)] if value in (0, 1) else []
        )
    elif isinstance(value, float):
        options = [str(value), f" {value} ", int(value) if value.is_integer() else value]
    else:
        options = [value]
    return random.Random(repr(value)).choice(options + [TEMPLATE] * 2) if in_config else random.choice(options)


def lax_mutate(data: dict, rng: random.Random) -> dict:
    """Values swapped for their lax twins (often inside a step's config), or for a random value."""
    doc = json.loads(json.dumps(data))
    paths = []

    def walk(node, path):
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            walk(v, path + (k,))

    walk(doc, ())
    for _ in range(rng.randint(1, 3)):
        configs = [p for p in paths if "config" in p[:-1] and "secrets" not in p]
        path = rng.choice(configs) if configs and rng.random() < 0.7 else rng.choice([p for p in paths if p])
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            value = parent[path[-1]]
            parent[path[-1]] = rng.choice(LAX) if rng.random() < 0.15 else lax_twin(value, "config" in path[:-1])
        except (KeyError, IndexError, TypeError):
            continue
    return doc


@pytest.mark.slow
def test_the_schema_accepts_every_file_the_checker_accepts():
    from tests.exo_dagster.spec.test_fuzz_loader import corpus, mutants

    registry, rng = default_registry(), random.Random(20261129)
    cases = list(corpus()) + [(f"gen{i}.yaml", cluster_text(i).encode()) for i in range(50)]
    cases += mutants()  # ~4,800 fuzz mutants of the same files; a few hundred of them load
    bases = [load(data, name) for name, data in corpus()] + [load(cluster_text(i)) for i in range(12)]
    cases += [(f"lax{n}.yaml", yaml.safe_dump(lax_mutate(rng.choice(bases), rng)).encode()) for n in range(600)]
    accepted = rejected_by_checker = 0
    wrong = []
    for name, data in cases:
        try:
            parse_cluster(data, name, registry=registry)
        except SpecError:
            rejected_by_checker += 1
            continue
        accepted += 1
        doc, _ = load_located(data, name)
        found = problems(doc.data)
        if found:
            wrong.append((name, found[:3], data.decode("utf-8", "replace")[:2000]))
    print(
        f"schema property: {len(cases)} files, {accepted} accepted by the checker (all by the schema), "
        f"{rejected_by_checker} rejected by the checker"
    )
    assert accepted >= 500, accepted
    assert not wrong, f"{len(wrong)} valid file(s) rejected by the schema; first: {wrong[0]}"
