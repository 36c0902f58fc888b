"""Configured satellites (presets, `*.satellite.yaml`): a new id as a fixed setup of another satellite.

Clusters use them like any satellite, may set only the open fields, and every mistake is located:
in the preset file (its own fields, its fixed config against the base's model) or in the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from exo_dagster.catalog import presets
from exo_dagster.catalog.loading import load_cluster_file
from exo_dagster.catalog.registry import default_registry
from exo_dagster.compile.compiler import compile_cluster
from exo_dagster.location import build_location, error_asset_name
from exo_dagster.spec.errors import SpecError

REPO = Path(__file__).resolve().parents[3]
EXO = Path(sys.executable).parent / "exo"

PRESET = """\
version: 0.0.1b
satellite:
  id: satellite/acme/people-csv
  version: 1.2.0
  uses: satellite/exospherehost/read-table
  docs: |
    Reads Acme's people exports (semicolon-separated CSV).
  config:
    format: csv
    separator: ";"
  open: [path, separator]
"""

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/people
  satellites:
    - name: Read semicolons
      uses: satellite/acme/people-csv@1.2.0
      identifier: people
      config:
        path: people.csv
    - name: Read commas
      uses: satellite/acme/people-csv
      identifier: more
      config:
        path: more.csv
        separator: ","
    - name: Upper
      uses: satellite/exospherehost/sql
      identifier: everyone
      config:
        query: "select upper(name) as name, city from people union all select upper(name), city from more order by name"
"""

SUMMARIZE = """\
version: 0.0.1b
satellite:
  id: satellite/acme/summarize
  version: 1.2.0
  uses: satellite/exospherehost/llm-complete
  docs: Summarize a support ticket in one sentence.
  config:
    model: gpt-4o-mini
    system: Summarize the support ticket in one sentence.
    max-tokens: 120
  open: [temperature, timeout]
"""

TICKETS = """\
version: 0.0.1b
cluster:
  identifier: acme/summaries
  secrets:
    - OPENAI_API_KEY: ${{ env.OPENAI_API_KEY }}
  satellites:
    - name: Tickets
      uses: satellite/exospherehost/sql
      identifier: tickets
      config: {query: "select 1 as id, 'printer on fire' as text"}
    - name: Summarize
      uses: satellite/acme/summarize
      identifier: summaries
      config:
        temperature: 0.2
        secrets:
          - API_KEY: ${{ secrets.OPENAI_API_KEY }}
      input:
        prompt: $${{ satellites.tickets.output.text }}
"""


@pytest.fixture(autouse=True)
def _no_satellite_path(monkeypatch):
    monkeypatch.delenv(presets.PATH_ENV, raising=False)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def _people(folder: Path) -> None:
    _write(folder, {"people.csv": "name;city\nada;london\nalan;wilmslow\n", "more.csv": "name,city\ngrace,arlington\n"})


def _at(text: str, marker: str, value: str | None = None) -> tuple[int, int]:
    """1-based line and column of `value` (default: the start of `marker`) on the line holding `marker`."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    return index + 1, lines[index].index(value if value is not None else marker.strip()) + 1


@pytest.mark.slow
def test_a_preset_compiles_and_runs_with_an_open_field_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "data"))
    folder = _write(tmp_path / "clusters", {"people.satellite.yaml": PRESET, "people.yaml": CLUSTER})
    _people(folder)
    cluster = load_cluster_file(folder / "people.yaml")  # the file's folder is searched for presets
    people, more, _ = cluster.steps
    assert people.satellite.id == "satellite/acme/people-csv" and people.satellite.version == "1.2.0"
    assert people.config == {"format": "csv", "separator": ";", "path": "people.csv"}
    assert more.config == {"format": "csv", "separator": ",", "path": "more.csv"}  # the open field, overridden

    defs = compile_cluster(cluster)
    result = defs.resolve_job_def(cluster.job_name).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    out = pl.read_parquet(tmp_path / "data" / "outputs" / "acme__people" / "everyone.parquet")
    assert out.to_dicts() == [
        {"name": "ADA", "city": "london"},
        {"name": "ALAN", "city": "wilmslow"},
        {"name": "GRACE", "city": "arlington"},
    ]
    spec = defs.resolve_assets_def(dg.AssetKey(["acme", "people", "people"])).specs_by_key[
        dg.AssetKey(["acme", "people", "people"])
    ]
    assert spec.metadata["exo/satellite"] == "satellite/acme/people-csv@1.2.0"


def test_the_registry_shows_the_presets_id_version_docs_and_file(tmp_path):
    folder = _write(tmp_path, {"people.satellite.yaml": PRESET, "summarize.satellite.yaml": SUMMARIZE})
    loaded = presets.presets_for([folder], default_registry())
    assert not loaded.broken
    registry = loaded.registry
    definition = registry.get("satellite/acme/people-csv@1.2.0")
    assert definition.docs == "Reads Acme's people exports (semicolon-separated CSV)."
    assert definition.based_on == "satellite/exospherehost/read-table@1.0.0"
    assert definition.open_config == ("path", "separator")
    assert registry.source("satellite/acme/people-csv") == f"preset {(folder / 'people.satellite.yaml').resolve()}"
    assert "satellite/acme/summarize" in registry.ids()
    assert "satellite/acme/people-csv" not in default_registry().ids()  # the installation's catalog is unchanged
    with pytest.raises(LookupError, match="unknown version"):
        registry.get("satellite/acme/people-csv@1.0.0")


def test_an_llm_preset_validates_and_leaves_only_its_open_fields(tmp_path):
    folder = _write(tmp_path, {"summarize.satellite.yaml": SUMMARIZE, "tickets.yaml": TICKETS})
    cluster = load_cluster_file(folder / "tickets.yaml")
    step = cluster.step("summaries")
    assert step.config == {
        "model": "gpt-4o-mini",
        "system": "Summarize the support ticket in one sentence.",
        "max-tokens": 120,
        "temperature": 0.2,
    }
    assert set(step.secrets) == {"API_KEY"}  # secrets are always the cluster's

    fixed = TICKETS.replace("        temperature: 0.2\n", "        temperature: 0.2\n        model: gpt-4o\n")
    (folder / "tickets.yaml").write_text(fixed)
    with pytest.raises(SpecError) as info:
        load_cluster_file(folder / "tickets.yaml")
    line, column = _at(fixed, "model: gpt-4o", "model")
    text = str(info.value)
    assert (
        f"{folder / 'tickets.yaml'}:{line}:{column}: error: `model` is fixed by `satellite/acme/summarize`, "
        "a configured satellite of `satellite/exospherehost/llm-complete@1.0.0`" in text
    )
    assert "fix: clusters may set only its open fields: `temperature`, `timeout`" in text

    bad_value = TICKETS.replace("temperature: 0.2", "temperature: 7")  # open, but checked by the base's model
    (folder / "tickets.yaml").write_text(bad_value)
    with pytest.raises(SpecError) as info:
        load_cluster_file(folder / "tickets.yaml")
    line, column = _at(bad_value, "temperature: 7", "7")
    assert f"tickets.yaml:{line}:{column}: error: `temperature`: Input should be less than or equal to 2" in str(
        info.value
    )


BAD_PRESETS = {
    "unknown base": (
        PRESET.replace("exospherehost/read-table", "exospherehost/read-tabel"),
        "uses: satellite",
        "satellite/",
        "unknown satellite `satellite/exospherehost/read-tabel`",
        "did you mean `satellite/exospherehost/read-table`",
    ),
    "invalid fixed value": (
        PRESET.replace("format: csv", "format: xml"),
        "format: xml",
        "xml",
        "`format`: Input should be 'auto', 'csv', 'jsonl', 'parquet' or 'excel'",
        "",
    ),
    "unknown fixed key": (
        PRESET.replace('separator: ";"', 'seperator: ";"'),
        "seperator",
        None,
        "unknown key `seperator`",
        "did you mean `separator`?",
    ),
    "open names no field": (
        PRESET.replace("open: [path, separator]", "open: [path, colour]"),
        "open:",
        "colour",
        "`open`: `colour` is not a config field of `satellite/exospherehost/read-table`",
        "its fields:",
    ),
    "bad id": (
        PRESET.replace("id: satellite/acme/people-csv", "id: acme/people-csv"),
        "id: acme",
        "acme",
        "`id`: `acme/people-csv` is not a satellite id",
        "satellite/<project>/<name>",
    ),
    "id taken": (
        PRESET.replace("id: satellite/acme/people-csv", "id: satellite/exospherehost/sql"),
        "id: satellite",
        "satellite/",
        "satellite `satellite/exospherehost/sql` already exists (exo-dagster)",
        "",
    ),
    "required field neither fixed nor open": (
        SUMMARIZE.replace("    model: gpt-4o-mini\n", ""),
        "config:",
        "config",
        "missing required field `model` of `satellite/exospherehost/llm-complete`",
        "add `model` to `open:`",
    ),
    "table reference": (
        PRESET.replace("format: csv", "path: ${{ satellites.files.output.path }}"),
        "path: $",
        "$",
        "`${{ satellites.files.output.path }}`: a configured satellite's config may use only",
        "leave this field `open:`",
    ),
    "fixed secrets": (
        SUMMARIZE.replace("    max-tokens: 120\n", "    max-tokens: 120\n    secrets: [{API_KEY: x}]\n"),
        "secrets:",
        None,
        "a configured satellite cannot fix `secrets`",
        "",
    ),
    "unknown key": (PRESET.replace("  open:", "  opne:"), "opne:", None, "unknown key `opne`", "did you mean `open`?"),
    "yaml syntax": (
        PRESET.replace("format: csv", "format: [csv"),
        "format: [",
        "[",
        "unclosed `[`",
        "close it with `]`",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PRESETS))
def test_each_preset_mistake_is_located_in_the_preset_file(tmp_path, case):
    text, marker, value, message, hint = BAD_PRESETS[case]
    file = tmp_path / "bad.satellite.yaml"
    file.write_text(text)
    with pytest.raises(SpecError) as info:
        presets.load_preset_file(file, default_registry())
    report = str(info.value)
    assert f"error: {message}" in report, report
    assert hint in report, report
    [error] = info.value.errors
    assert error.location.file == str(file)
    if marker is not None:
        assert (error.location.line, error.location.column) == _at(text, marker, value), report
    assert f"{file}:{error.location.line}:{error.location.column}: error:" in report
    assert "Traceback" not in report


def test_a_preset_is_not_based_on_another_preset(tmp_path):
    other = PRESET.replace("id: satellite/acme/people-csv", "id: satellite/acme/more-csv").replace(
        "uses: satellite/exospherehost/read-table", "uses: satellite/acme/people-csv"
    )
    folder = _write(tmp_path, {"a.satellite.yaml": PRESET, "b.satellite.yaml": other})
    loaded = presets.presets_for([folder], default_registry())
    [broken] = loaded.broken
    assert broken.endswith("b.satellite.yaml")
    assert "`satellite/acme/people-csv` is itself a configured satellite" in str(loaded.broken[broken])
    assert "uses: satellite/exospherehost/read-table@1.0.0" in str(loaded.broken[broken])


def test_the_search_path_env_and_the_cluster_folder(tmp_path, monkeypatch):
    shared = _write(tmp_path / "shared" / "deep", {"people.satellite.yaml": PRESET})
    clusters = _write(tmp_path / "clusters", {"people.yaml": CLUSTER})
    _people(clusters)
    with pytest.raises(SpecError) as info:  # not next to the cluster, not on the path
        load_cluster_file(clusters / "people.yaml")
    line, column = _at(CLUSTER, "uses: satellite/acme/people-csv@1.2.0", "satellite/")
    assert f"people.yaml:{line}:{column}: error: unknown satellite `satellite/acme/people-csv@1.2.0`" in str(info.value)

    monkeypatch.setenv(presets.PATH_ENV, os.pathsep.join([str(tmp_path / "elsewhere"), str(tmp_path / "shared")]))
    assert load_cluster_file(clusters / "people.yaml").step("people").satellite.id == "satellite/acme/people-csv"
    monkeypatch.delenv(presets.PATH_ENV)

    # the code location's folders: presets anywhere under them (recursively), never loaded as clusters
    location = _write(tmp_path / "location", {"team-a/people.yaml": CLUSTER, "shared/people.satellite.yaml": PRESET})
    _people(location / "team-a")
    built = build_location([location])
    assert built.ok, built.error()
    assert [c.spec.identifier for c in built.clusters] == ["acme/people"]
    assert list(built.satellites.values())[0].id == "satellite/acme/people-csv"
    assert shared.exists()


def test_a_broken_preset_is_isolated_in_the_location(tmp_path):
    broken_preset = PRESET.replace("format: csv", "format: xml")
    healthy = (
        CLUSTER.replace("identifier: acme/people", "identifier: acme/healthy")
        .replace("uses: satellite/acme/people-csv@1.2.0", "uses: satellite/exospherehost/read-table")
        .replace("uses: satellite/acme/people-csv", "uses: satellite/exospherehost/read-table")
    )
    folder = _write(
        tmp_path / "location", {"people.satellite.yaml": broken_preset, "people.yaml": CLUSTER, "healthy.yaml": healthy}
    )
    _people(folder)
    built = build_location([folder])
    preset_file, cluster_file = (
        str((folder / "people.satellite.yaml").resolve()),
        str((folder / "people.yaml").resolve()),
    )
    assert set(built.broken) == {preset_file, cluster_file}, built.error()
    assert [c.spec.identifier for c in built.clusters] == ["acme/healthy"]
    line, column = _at(broken_preset, "format: xml", "xml")
    assert f"{preset_file}:{line}:{column}: error: `format`" in str(built.broken[preset_file])
    cluster_report = str(built.broken[cluster_file])
    assert "unknown satellite `satellite/acme/people-csv@1.2.0`" in cluster_report
    assert (
        f"`satellite/acme/people-csv` is declared by preset file {preset_file}, which did not load "
        f"({preset_file}:{line}:{column}:" in cluster_report
    )
    keys = {key.to_user_string() for key in built.definitions.resolve_all_asset_keys()}
    assert (
        f"exo_errors/{error_asset_name(preset_file)}" in keys and f"exo_errors/{error_asset_name(cluster_file)}" in keys
    )
    assert "acme/healthy/people" in keys
    error_asset = built.definitions.resolve_assets_def(dg.AssetKey(["exo_errors", error_asset_name(preset_file)]))
    assert "Broken configured-satellite file" in next(iter(error_asset.descriptions_by_key.values()))


def exo(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME", presets.PATH_ENV)
    }
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([str(EXO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_exo_validate_checks_presets_and_the_clusters_using_them(tmp_path):
    folder = _write(tmp_path / "location", {"people.satellite.yaml": PRESET, "people.yaml": CLUSTER})
    _people(folder)
    preset_file = (folder / "people.satellite.yaml").resolve()
    result = exo("validate", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok  {preset_file}: satellite/acme/people-csv@1.2.0 (configured satellite/exospherehost/read-table@1.0.0)"
        in result.stdout
    )
    assert "acme__people" in result.stdout

    result = exo("validate", str(preset_file))  # a preset file alone
    assert result.returncode == 0, result.stdout + result.stderr
    assert "satellite/acme/people-csv@1.2.0" in result.stdout

    fixed = CLUSTER.replace("        path: people.csv\n", "        path: people.csv\n        format: jsonl\n")
    (folder / "people.yaml").write_text(fixed)
    (folder / "people.satellite.yaml").write_text(PRESET.replace("open: [path, separator]", "open: [path, seperator]"))
    result = exo("validate", str(folder))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line, column = _at(PRESET.replace("open: [path, separator]", "open: [path, seperator]"), "open:", "seperator")
    assert f"{preset_file}:{line}:{column}: error: `open`: `seperator` is not a config field" in output
    assert "did you mean `separator`?" in output
    line, column = _at(CLUSTER, "uses: satellite/acme/people-csv@1.2.0", "satellite/")
    assert f"people.yaml:{line}:{column}: error: unknown satellite `satellite/acme/people-csv@1.2.0`" in output
    assert "Traceback" not in output

    (folder / "people.satellite.yaml").write_text(PRESET)
    result = exo("validate", str(folder))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line, column = _at(fixed, "format: jsonl", "format")
    assert f"people.yaml:{line}:{column}: error: `format` is fixed by `satellite/acme/people-csv`" in output
    assert "clusters may set only its open fields: `path`, `separator`" in output


@pytest.mark.slow
def test_exo_satellites_lists_presets_and_shows_only_their_open_fields(tmp_path):
    folder = _write(
        tmp_path / "location",
        {"people.satellite.yaml": PRESET, "broken.satellite.yaml": "version: 0.0.1b\nsatellite: {id: nope}\n"},
    )
    listed = exo("satellites", str(folder))
    assert listed.returncode == 0, listed.stderr
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("satellite/acme/people-csv@1.2.0")]
    assert "people.satellite.yaml" in line and line.endswith("Reads Acme's people exports (semicolon-separated CSV).")
    assert "broken.satellite.yaml did not load" in listed.stderr
    shown = exo("satellites", "--config", "satellite/acme/people-csv", str(folder))
    assert shown.returncode == 0, shown.stderr
    assert "configured from satellite/exospherehost/read-table@" in shown.stdout and "format='csv'" in shown.stdout
    keys = [
        x.split()[0]
        for x in shown.stdout.splitlines()[
            shown.stdout.splitlines().index(next(x for x in shown.stdout.splitlines() if x.startswith("KEY"))) + 1 :
        ]
        if x and not x.startswith(" ")
    ]
    assert keys == ["path", "separator"]  # the open fields, in the model's order; fixed ones are not settable
    assert exo("satellites", "--config", "satellite/acme/people-csv").returncode == 1  # not on the search path
