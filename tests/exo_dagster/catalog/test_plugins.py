"""Satellites from other distributions, installed for real: found through the entry-point group
`exo_dagster.satellites`, listed, validated and run by the `exo` command; a plugin that fails to import
or an id two distributions declare is a located, named error, never a crash.

Each distribution under tests/plugins/ is installed with `pip install --no-deps --no-build-isolation
--no-index --target SITE` (offline), and the `exo` command runs with `PYTHONPATH=SITE:<repo root>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"
EXO = Path(sys.executable).parent / "exo"

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/shouting
  satellites:
    - name: Read people
      uses: satellite/exospherehost/read-table
      identifier: people
      config:
        path: people.csv
    - name: Shout names
      uses: satellite/acme/shout@0.1.0
      identifier: shout
      config:
        column: name
"""

HEALTHY = """\
version: 0.0.1b
cluster:
  identifier: acme/healthy
  satellites:
    - name: Numbers
      uses: satellite/exospherehost/sql
      identifier: numbers
      config: {query: "select 1 as n"}
"""


def _install(source: Path, tmp: Path) -> Path:
    """Install one distribution's source tree into a folder of its own; returns that folder."""
    work = tmp / "src" / source.name
    shutil.copytree(source, work)  # setuptools builds in the source tree: keep the repository clean
    site = tmp / "site" / source.name
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert list(site.glob("*.dist-info/entry_points.txt")), f"no entry points installed in {site}"
    return site


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("plugins")
    out = {name: _install(PLUGINS / name, tmp) for name in ("exo-acme-satellites", "exo-broken-satellites")}
    # a fork that declares the same id under another distribution name
    fork = tmp / "fork-src" / "exo-acme-fork"
    shutil.copytree(PLUGINS / "exo-acme-satellites", fork)
    (fork / "exo_acme_satellites").rename(fork / "exo_acme_fork")
    pyproject = (fork / "pyproject.toml").read_text()
    (fork / "pyproject.toml").write_text(
        pyproject.replace('name = "exo-acme-satellites"', 'name = "exo-acme-fork"')
        .replace('acme = "exo_acme_satellites"', 'acme-fork = "exo_acme_fork"')
        .replace('"satellite/acme/shout" = "exo_acme_satellites"', '"satellite/acme/shout" = "exo_acme_fork"')
        .replace('packages = ["exo_acme_satellites"]', 'packages = ["exo_acme_fork"]')
    )
    out["exo-acme-fork"] = _install(fork, tmp)
    return out


def _env(*sites: Path, dagster_home: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("EXO_DATA_DIR", "EXO_CLUSTERS", "DAGSTER_HOME", "EXO_SATELLITE_PATH", "PYTHONPATH")
    }
    env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), str(REPO)])
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


def exo(*args: str, sites: tuple[Path, ...] = (), dagster_home: Path | None = None, cwd: Path = REPO):
    return subprocess.run(
        [str(EXO), *args],
        cwd=cwd,
        env=_env(*sites, dagster_home=dagster_home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _cluster(folder: Path, text: str = CLUSTER, name: str = "shouting.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "people.csv").write_text("name,city\nada,london\nalan,wilmslow\n")
    path = folder / name
    path.write_text(text)
    return path


def test_a_plugin_satellite_is_listed_with_its_distribution(sites):
    acme = sites["exo-acme-satellites"]
    result = exo("satellites", sites=(acme,))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "satellite/acme/shout@0.1.0" in [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    code = (
        "import sys; from exo_dagster.catalog.registry import default_registry as d; r = d(); "
        "deferred = 'exo_acme_satellites' not in sys.modules; "  # it has an index: imported on first use
        "print(deferred, r.source('satellite/acme/shout'), r.source('satellite/exospherehost/sql'), r.problems())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(acme), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "exo-acme-satellites", "exo-dagster", "[]"]


def test_validate_and_run_a_cluster_that_uses_a_plugin(sites, tmp_path):
    acme = sites["exo-acme-satellites"]
    cluster = _cluster(tmp_path / "clusters")
    result = exo("validate", str(cluster), sites=(acme,))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  " in result.stdout and "acme__shouting" in result.stdout

    home = tmp_path / "home"
    home.mkdir()
    result = exo("run", str(cluster), sites=(acme,), dagster_home=home, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert ": success" in result.stdout
    out = pl.read_parquet(home / "exo" / "outputs" / "acme__shouting" / "shout.parquet")
    assert out.to_dicts() == [{"name": "ADA", "city": "london"}, {"name": "ALAN", "city": "wilmslow"}]


def test_without_the_plugin_the_cluster_is_a_located_unknown_satellite(sites, tmp_path):
    cluster = _cluster(tmp_path / "clusters")
    result = exo("validate", str(cluster))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = CLUSTER.splitlines().index("      uses: satellite/acme/shout@0.1.0") + 1
    assert f"{cluster}:{line}:13: error: unknown satellite `satellite/acme/shout@0.1.0`" in output
    assert "Traceback" not in output


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_loads(sites, tmp_path):
    broken = sites["exo-broken-satellites"]
    folder = tmp_path / "clusters"
    cluster = _cluster(folder)
    (folder / "healthy.yaml").write_text(HEALTHY)

    result = exo("validate", str(folder), sites=(broken,))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "ok  " in result.stdout and "acme__healthy" in result.stdout
    assert f"{cluster}:" in output and "unknown satellite `satellite/acme/shout@0.1.0`" in output
    named = (
        "plugin `exo-broken-satellites` (entry point `broken = exo_broken_satellites`) failed to load: "
        "RuntimeError: exo-broken-satellites needs the ACME_LICENSE environment variable"
    )
    assert named in output  # in the cluster's hint, and as a warning of its own
    assert f"warning: {named}" in result.stderr
    assert "Traceback" not in output

    # the code location: the healthy cluster's job loads; the other file is an exo_errors asset naming the plugin
    code = (
        "import sys; from exo_dagster.location import definitions_for; d = definitions_for(sys.argv[1]); "
        "r = d.get_repository_def(); print(sorted(r.job_names)); "
        "print([a.descriptions_by_key for a in r.assets_defs_by_key.values() if 'exo_errors' in "
        "a.group_names_by_key.values()])"
    )
    env = _env(broken)
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-5000:]
    assert "acme__healthy" in out.stdout.splitlines()[0] and "acme__shouting" not in out.stdout.splitlines()[0]
    assert "exo-broken-satellites" in out.stdout.splitlines()[1] and "ACME_LICENSE" in out.stdout.splitlines()[1]
    assert "exo-broken-satellites" in out.stderr  # the location's WARNING

    # listing still works, and the half-declared satellite of the failed plugin is left out
    result = exo("satellites", sites=(broken,))
    assert result.returncode == 0, result.stderr
    assert "satellite/exospherehost/sql@" in result.stdout and "satellite/broken/half-declared" not in result.stdout


def test_two_distributions_declaring_one_id_is_an_error_naming_both(sites, tmp_path):
    cluster = _cluster(tmp_path / "clusters")
    result = exo("validate", str(cluster), sites=(sites["exo-acme-satellites"], sites["exo-acme-fork"]))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line = CLUSTER.splitlines().index("      uses: satellite/acme/shout@0.1.0") + 1
    assert f"{cluster}:{line}:13: error: ambiguous satellite `satellite/acme/shout@0.1.0`" in output
    assert "distribution `exo-acme-satellites`" in output and "distribution `exo-acme-fork`" in output
    assert "uninstall one of them" in output and "Traceback" not in output
