"""Seeded fuzzing of the cluster loader and the location build.

1. >= 2,000 mutants of real cluster files (bytes flipped, hostile tokens inserted, lines moved,
   truncated): each gives a Cluster or located errors; never a traceback, a hang or a crash.
2. Property: over the corpus and a sample of mutants, `exo validate` (build_location) is ok exactly
   when the strict location path (Definitions built, every job resolved, the repository snapshot
   serialized as a code server does) succeeds.
"""

from __future__ import annotations

import functools
import random
import time
from pathlib import Path

import pytest
import yaml

from exo_dagster import SpecError, parse_cluster
from exo_dagster.compile.compiler import compile_clusters
from exo_dagster.location import build_location
from tests.exo_dagster.clusters_corpus import cluster_text

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

ROOT = Path(__file__).resolve().parents[3]
SEED = 20261129
MUTANTS = 4000  # byte/line-level mutants
SEMANTIC_MUTANTS = 800  # valid YAML with hostile values in random places: reaches the spec checker
HOSTILE = [
    "&a ",
    "*a",
    "!!binary ",
    "!x ",
    "!!set ",
    ".inf",
    ".nan",
    "-.inf",
    "1e999",
    "9" * 30,
    "2024-01-01",
    "12:30:00",
    "<<: *a",
    "<<: {x: 1}",
    "[" * 70,
    "{",
    "}",
    "[",
    "]",
    "'",
    '"',
    "\t",
    "\x00",
    "\x07",
    "\x1b",
    "é",
    "\u2028",
    "\ufeff",
    "${{ satellites.x.output }}",
    "$${{ satellites.rows.output.word }}",
    "${{",
    "}}",
    "${{ secrets.NOPE }}",
    "${{ env. }}",
    ": ",
    "- ",
    "#",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "? ",
    "|\n",
    ">-\n",
    "~",
    "null",
    "true",
    "-1",
    "0x1F",
    "0o17",
    "1_000",
    "America",
    "../../etc/passwd",
    "\r\n",
    "\r",
    "a: &b [*b]",
    "Rows",
    "identifier: rows\n",
    "uses: satellite/exospherehost/sql\n",
    "retries: 99999999999999999999\n",
    "sla: 6h\n",
    "cron: '61 * * * *'\n",
    "timezone: Europe\n",
    "gpu: 1\n",
    "fan-out: {chunk-rows: 0}\n",
    "executor: celery\n",
]


def corpus() -> list[tuple[str, bytes]]:
    files = [ROOT / "tests" / "exo_dagster" / "fixtures" / "seed.yaml", *sorted((ROOT / "definitions").glob("*.yaml"))]
    out = [(p.name, p.read_bytes()) for p in files]
    out += [(f"gen{i}.yaml", cluster_text(i).encode()) for i in (0, 1, 3, 6, 9, 10)]
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    for _ in range(rng.randint(1, 3)):
        if not data:
            data = rng.choice(HOSTILE).encode("utf-8", "surrogatepass")
            continue
        op = rng.randrange(8)
        at = rng.randrange(len(data) + 1)
        if op == 0:  # insert a hostile token
            data = data[:at] + rng.choice(HOSTILE).encode() + data[at:]
        elif op == 1:  # delete a span
            data = data[:at] + data[at + rng.randint(1, 20) :]
        elif op == 2:  # flip a byte
            if at < len(data):
                data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]
        elif op == 3:  # truncate
            data = data[:at]
        else:  # line-level: duplicate, swap, re-indent, replace a value
            lines = data.split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == 4:
                lines.insert(i, lines[j])
            elif op == 5:
                lines[i], lines[j] = lines[j], lines[i]
            elif op == 6:
                lines[i] = (b" " * rng.choice([1, 2, 4]) + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
            else:
                head, sep, _ = lines[i].partition(b": ")
                if sep:
                    lines[i] = head + sep + rng.choice(HOSTILE).encode()
            data = b"\n".join(lines)
    return data


VALUES = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    1.5,
    1e300,
    "",
    "x" * 5000,
    "${{ satellites.rows.output }}",
    "$${{ satellites.rows.output.word }}",
    "${{ env.HOME }}",
    "${{ secrets.HOOK }}",
    "${{ failure.error }}",
    [],
    {},
    [1, 2],
    {"a": 1},
    {"uses": "x"},
    "satellite/exospherehost/sql",
    "6h",
    "0 * * * *",
    "* * * * * *",
    "Etc/../../x",
    "cluster/a/b",
    "../x",
    "/etc/passwd",
    "\u202e",
    "a\x00b",
    10**6,
    "'; drop table x; --",
]
KEYS = [
    "identifier",
    "uses",
    "config",
    "input",
    "after",
    "resources",
    "trigger",
    "retries",
    "fan-out",
    "sla",
    "timezone",
    "cron",
    "from",
    "secrets",
    "execution",
    "executor",
    "queues",
    "level",
    "x-extra",
]


def semantic_mutate(data: bytes, rng: random.Random) -> bytes:
    doc = yaml.safe_load(data)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(doc))[1:]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and rng.random() < 0.2:
            parent[rng.choice(KEYS)] = rng.choice(VALUES)
        else:
            parent[path[-1]] = rng.choice(VALUES)
    return yaml.safe_dump(doc, allow_unicode=True).encode()


def _paths(node, path=()):
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, path + (key,))


@functools.lru_cache(maxsize=1)
def mutants() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    base = corpus()
    out = [(f"m{n}-{name}", mutate(data, rng)) for n, (name, data) in ((n, rng.choice(base)) for n in range(MUTANTS))]
    out += [
        (f"s{n}-{name}", semantic_mutate(data, rng))
        for n, (name, data) in ((n, rng.choice(base)) for n in range(SEMANTIC_MUTANTS))
    ]
    return out


def test_fuzzed_cluster_files_give_data_or_located_errors():
    cases = mutants()
    located = loaded = 0
    slowest = 0.0
    started = time.perf_counter()
    for name, data in cases:
        t0 = time.perf_counter()
        try:
            parse_cluster(data, name)
            loaded += 1
        except SpecError as exc:
            lines = max(1, data.count(b"\n") + 1)
            assert exc.errors, name
            for d in exc.diagnostics:
                assert d.location.file == name and 1 <= d.location.line <= lines + 1 and d.location.column >= 1, (
                    name,
                    d,
                )
            report = exc.report()
            assert "Traceback" not in report and f"{name}:" in report
            located += 1
        slowest = max(slowest, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    print(
        f"fuzz: {len(cases)} cases, {loaded} loaded, {located} located errors, 0 tracebacks, 0 hangs; "
        f"slowest {slowest * 1000:.0f} ms, {elapsed:.1f} s in all"
    )
    assert len(cases) >= 2000 and loaded + located == len(cases)
    assert located > len(cases) // 2 and loaded > 50  # the mutants reach both outcomes
    assert slowest < 2.0 and elapsed < 60


def _loads_strictly(path: Path) -> bool:
    """The location's strict path, independent of build_location: parse, compile, resolve, snapshot."""
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster_shared.serdes import serialize_value

    try:
        from exo_dagster import load_cluster_file

        cluster = load_cluster_file(path)
    except SpecError:
        return False
    try:
        repo = compile_clusters([cluster]).get_repository_def()
        for job in repo.job_names:
            repo.get_job(job)
        serialize_value(RepositorySnap.from_def(repo))
        return True
    except Exception:
        return False


@pytest.mark.parametrize("chunk", range(2))
def test_validate_ok_iff_the_location_loads(tmp_path, chunk):
    sample = corpus() + mutants()[chunk::30]
    agree = {True: 0, False: 0}
    for name, data in sample:
        path = tmp_path / name
        path.write_bytes(data)
        validated = build_location([path]).ok
        assert validated == _loads_strictly(path), name
        agree[validated] += 1
    print(f"validate/load agreement over {len(sample)} files: {agree[True]} both ok, {agree[False]} both fail")
    assert agree[True] >= 5 and agree[False] >= 5
