"""The satellite index (`exo_dagster.satellite_index`): a location imports only the satellite packages its
clusters use, while everything that needs the whole catalog (suggestions, listings, problems) still sees it.

Each check runs in a fresh interpreter (which packages are imported is per process). Distributions are
throwaway `*.dist-info` folders on PYTHONPATH: `exo-dagster` itself with the entry points of this tree's
pyproject.toml (ahead of the installed metadata, which may predate the index), and small third-party ones.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ENTRY_POINTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
INDEX = ENTRY_POINTS["exo_dagster.satellite_index"]
PACKAGES = ENTRY_POINTS["exo_dagster.satellites"]

READ_TABLE = """\
version: 0.0.1b
cluster:
  identifier: acme/people
  satellites:
    - name: Read people
      uses: satellite/exospherehost/read-table
      identifier: people
      config:
        path: people.csv
"""

LOADED = "sorted({m.split('.')[1] for m in sys.modules if m.startswith('satellites.')})"


def _dist(site: Path, name: str, groups: dict[str, dict[str, str]], modules: dict[str, str] | None = None) -> Path:
    """A minimal installed distribution: METADATA, entry_points.txt and its modules, in `site`."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()
        )
    )
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    return site


def _exo(site: Path) -> Path:
    """exo-dagster with this tree's entry points (the index included)."""
    return _dist(site, "exo-dagster", ENTRY_POINTS)


def _run(code: str, *sites: Path, cwd: Path = REPO, **env: str) -> list:
    """Run `code` in a fresh interpreter; what it passes to `out(value)` is returned, in order."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME", "EXO_SATELLITE_PATH", "PYTHONPATH")
    }
    environ.update(env, PYTHONPATH=os.pathsep.join([*map(str, sites), str(REPO)]))
    prelude = "import json, sys\ndef out(value):\n    print('@@' + json.dumps(value), flush=True)\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-5000:]
    return [json.loads(line[2:]) for line in out.stdout.splitlines() if line.startswith("@@")]


LOCATION = f"""
from exo_dagster.location import build_location
import dagster as dg
built = build_location([sys.argv[1]])
out({LOADED})
job = built.definitions.resolve_job_def(built.clusters[0].job_name)
result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
out([result.success, sorted(built.broken), built.warnings])
"""


def _location(tmp_path: Path) -> Path:
    folder = tmp_path / "clusters"
    folder.mkdir()
    (folder / "people.csv").write_text("name,city\nada,london\n")
    (folder / "people.yaml").write_text(READ_TABLE)
    return folder


def _location_run(folder: Path, tmp_path: Path, *sites: Path) -> list:
    code = LOCATION.replace("sys.argv[1]", repr(str(folder)))
    return _run(code, *sites, cwd=tmp_path, EXO_DATA_DIR=str(tmp_path / "data"), DAGSTER_HOME=str(tmp_path))


@pytest.mark.slow
def test_a_read_table_location_imports_only_the_tables_package_and_runs(tmp_path):
    folder = _location(tmp_path)
    loaded, (success, broken, warnings) = _location_run(folder, tmp_path, _exo(tmp_path / "site"))
    assert loaded == ["tables"]
    assert success and broken == [] and warnings == []
    assert (tmp_path / "data" / "outputs" / "acme__people" / "people.parquet").is_file()


@pytest.mark.slow
def test_the_same_location_with_the_installed_metadata_is_correct(tmp_path):
    """Whatever the installed metadata says (with or without the index), the location loads and runs."""
    folder = _location(tmp_path)
    loaded, (success, broken, warnings) = _location_run(folder, tmp_path)
    assert "tables" in loaded
    assert success and broken == [] and warnings == []


@pytest.mark.slow
def test_an_unknown_id_is_suggested_from_the_whole_catalog(tmp_path):
    code = f"""
    from exo_dagster.catalog.loading import parse_cluster
    from exo_dagster.catalog.registry import default_registry
    from exo_dagster.spec.errors import SpecError
    r = default_registry()
    out({LOADED})
    out(r.source("satellite/exospherehost/sql"))
    out({LOADED})
    text = {READ_TABLE!r}.replace("read-table", "llm-complet")
    try:
        parse_cluster(text)
    except SpecError as exc:
        out(str(exc))
    out({LOADED})
    out([len(r.ids()), r.problems()])
    """
    before, source, after_sql, error, after, (count, problems) = _run(code, _exo(tmp_path / "site"))
    assert before == [] and source == "exo-dagster" and after_sql == ["tables"]
    assert "unknown satellite `satellite/exospherehost/llm-complet`" in error
    assert "satellite/exospherehost/llm-complete" in error  # did you mean: an ai satellite, never imported before
    assert after == ["ai", "documents", "files", "notify", "tables"]
    assert count == len(INDEX) and problems == []


@pytest.mark.slow
def test_a_merged_catalog_stays_lazy(tmp_path):
    code = f"""
    from exo_dagster.catalog.registry import Registry, default_registry
    view = default_registry().merged(Registry())
    again = view.merged(Registry())
    out({LOADED})
    out([again.get("satellite/exospherehost/send-email").id, "satellite/exospherehost/send-email" in view])
    out({LOADED})
    out(["satellite/exospherehost/embed-text" in view.ids(), {LOADED}])
    """
    before, found, after, (listed, everything) = _run(code, _exo(tmp_path / "site"))
    assert before == [] and found == ["satellite/exospherehost/send-email", True] and after == ["notify"]
    assert listed and everything == ["ai", "documents", "files", "notify", "tables"]


def test_the_index_lists_exactly_what_each_builtin_package_declares():
    declared: dict[str, str] = {}
    for package in PACKAGES.values():
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            module = importlib.import_module(info.name)
            for _, fn in inspect.getmembers(module, lambda f: hasattr(f, "__exo_satellite__")):
                definition = fn.__exo_satellite__
                if fn.__module__ == info.name:
                    for name in (definition.id, *definition.aliases):
                        declared[name] = info.name
    assert declared == INDEX
    # every indexed module lies under a package of the satellites group (that entry point is what gets imported)
    assert all(any(m == p or m.startswith(p + ".") for p in PACKAGES.values()) for m in INDEX.values())


ACME = {
    "acme_hello": """
    from exo_dagster.sdk import SatelliteConfig, satellite

    class Config(SatelliteConfig):
        pass

    @satellite("satellite/acme/hello", config=Config)
    def hello(ctx, config):
        return None
"""
}


def test_a_plugin_without_an_index_loads_eagerly(tmp_path):
    site = _dist(_exo(tmp_path / "site"), "acme", {"exo_dagster.satellites": {"acme": "acme_hello"}}, ACME)
    code = f"""
    from exo_dagster.catalog.registry import default_registry
    r = default_registry()
    out(["acme_hello" in sys.modules, {LOADED}, r.source("satellite/acme/hello")])
    """
    [(imported, loaded, source)] = _run(code, site)
    assert imported and loaded == [] and source == "acme"


@pytest.mark.slow
def test_an_indexed_plugin_that_fails_to_import_is_named_as_before(tmp_path):
    site = _dist(
        _exo(tmp_path / "site"),
        "acme-broken",
        {
            "exo_dagster.satellites": {"broken": "acme_broken"},
            "exo_dagster.satellite_index": {"satellite/acme/boom": "acme_broken"},
        },
        {"acme_broken": "raise RuntimeError('acme needs the ACME_LICENSE variable')\n"},
    )
    code = """
    from exo_dagster.catalog.registry import default_registry
    from exo_dagster.spec.lookup import UnknownSatellite
    r = default_registry()
    out(["acme_broken" in sys.modules, r.problems(load=False)])
    try:
        r.get("satellite/acme/boom")
    except UnknownSatellite as exc:
        out([str(exc), exc.note])
    out(r.problems())
    """
    (imported, early), (error, note), problems = _run(code, site)
    named = (
        "plugin `acme-broken` (entry point `broken = acme_broken`) failed to load: "
        "RuntimeError: acme needs the ACME_LICENSE variable"
    )
    assert not imported and early == []  # not imported until a cluster uses its id
    assert error == "unknown satellite `satellite/acme/boom`" and note == named
    assert problems == [named]


@pytest.mark.slow
def test_an_index_that_names_the_wrong_module_still_resolves_and_is_named(tmp_path):
    site = _dist(
        _exo(tmp_path / "site"),
        "acme",
        {
            "exo_dagster.satellites": {"acme": "acme_hello"},
            "exo_dagster.satellite_index": {"satellite/acme/ghost": "acme_hello"},
        },
        ACME,
    )
    code = f"""
    from exo_dagster.catalog.registry import default_registry
    from exo_dagster.spec.lookup import UnknownSatellite
    r = default_registry()
    out([r.source("satellite/acme/hello"), {LOADED}])
    try:
        r.get("satellite/acme/ghost")
    except UnknownSatellite as exc:
        out(exc.note)
    out(r.problems())
    """
    (source, loaded), note, problems = _run(code, site)
    assert source == "acme" and loaded == ["ai", "documents", "files", "notify", "tables"]  # not indexed: everything
    assert (
        "the satellite index of `acme` names `satellite/acme/ghost` in `acme_hello`, which does not declare it" in note
    )
    assert (
        len(problems) == 2
        and "`satellite/acme/hello` is declared by `acme` but missing from its satellite index" in problems[1]
    )


def test_an_id_of_an_eager_and_an_indexed_distribution_is_ambiguous(tmp_path):
    site = _dist(_exo(tmp_path / "site"), "acme", {"exo_dagster.satellites": {"acme": "acme_hello"}}, ACME)
    fork = {"acme_fork": ACME["acme_hello"]}
    site = _dist(
        site,
        "acme-fork",
        {
            "exo_dagster.satellites": {"fork": "acme_fork"},
            "exo_dagster.satellite_index": {"satellite/acme/hello": "acme_fork"},
        },
        fork,
    )
    code = """
    from exo_dagster.catalog.registry import default_registry
    from exo_dagster.spec.lookup import UnknownSatellite
    r = default_registry()
    out("acme_fork" in sys.modules)
    try:
        r.get("satellite/acme/hello")
    except UnknownSatellite as exc:
        out([str(exc), exc.note])
    """
    imported, (error, note) = _run(code, site)
    assert not imported
    assert error == "ambiguous satellite `satellite/acme/hello`"
    assert "distribution `acme`" in note and "distribution `acme-fork`" in note


@pytest.mark.parametrize("order", ["module first", "catalog first"])
def test_a_builtin_module_imported_directly_keeps_its_distribution(tmp_path, order):
    first, second = ("import satellites.tables.sql", "r = default_registry()")[:: 1 if order == "module first" else -1]
    code = f"""
    from exo_dagster.catalog.registry import default_registry
    {first}
    {second}
    out([r.source("satellite/exospherehost/sql"), {LOADED}])
    """
    [(source, loaded)] = _run(code, _exo(tmp_path / "site"))
    assert source == "exo-dagster" and loaded == ["tables"]


@pytest.mark.slow
def test_threads_looking_up_deferred_ids_at_once_each_get_the_right_answer(tmp_path):
    code = f"""
    import threading
    from exo_dagster.catalog.registry import Registry, default_registry
    view = default_registry().merged(Registry())
    ids = {sorted(INDEX)!r} * 4
    answers, start = {{}}, threading.Barrier(len(ids))
    def look(i, uses):
        start.wait()
        answers[i] = [uses, view.get(uses).id, view.source(uses)]
    threads = [threading.Thread(target=look, args=(i, uses)) for i, uses in enumerate(ids)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    out([[answers.get(i) for i in range(len(ids))], [[u, view.get(u).id, view.source(u)] for u in ids]])
    out([view.problems(), len(view.ids())])
    """
    (answers, expected), (problems, known) = _run(code, _exo(tmp_path / "site"))
    assert answers == expected and {source for _, _, source in answers} == {"exo-dagster"}
    assert problems == [] and known == len(INDEX)
