"""`exo_dagster.ClusterComponent` in a real `dg` project, driven by Dagster's own CLI in subprocesses.

The project is written by hand the way `create-dagster project` lays one out (pyproject.toml with
`[tool.dg]`, a package whose `definitions.py` calls `load_from_defs_folder`, a `defs/` folder), in a
flat layout so `dg` imports it from the project root without installing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.loopback import free_port

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent
PACKAGE = "exo_dg_demo"
CLEARED_ENV = (
    "EXO_DATA_DIR",
    "EXO_CLUSTERS",
    "EXO_SECRETS_BACKEND",
    "EXO_STRICT_LOAD",
    "EXO_SATELLITE_PATH",
    "DAGSTER_IS_DEFS_VALIDATION_CLI",
    "PYTHONPATH",
)

PYPROJECT = f"""\
[project]
name = "exo-dg-demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["exo-dagster"]

[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{PACKAGE}"
registry_modules = ["{PACKAGE}.components.*"]
"""

DEFINITIONS_PY = """\
from pathlib import Path

from dagster import definitions, load_from_defs_folder


@definitions
def defs():
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

ORDERS_CSV = "region,amount\neu,3\nus,4\neu,5\n"

ORDERS_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/orders
  satellites:
    - name: Read orders
      uses: satellite/exospherehost/read-table
      identifier: orders
      config: {path: data/orders.csv}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      config:
        query: select region, sum(amount)::bigint as total from orders group by region order by region
"""

FOLDER_DEFS = """\
type: exo_dagster.ClusterComponent
attributes:
  path: yaml            # the cluster folder, relative to this file
"""

INLINE_DEFS = """\
type: exo_dagster.ClusterComponent
attributes:
  cluster:
    version: 0.0.1b
    cluster:
      identifier: acme/inline
      satellites:
        - name: Read orders
          uses: satellite/exospherehost/read-table
          identifier: orders
          config: {path: data/orders.csv}
        - name: Totals
          uses: satellite/exospherehost/sql
          identifier: totals
          config:
            query: select count(*) as n from ${{ satellites.orders.output }}
"""

BROKEN_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: acme/broken
  satellites:
    - name: Read
      uses: satellite/exospherehost/read-tabel
"""


def write_project(root: Path, *, broken: bool = False, inline_typo: bool = False) -> Path:
    package = root / PACKAGE
    (package / "defs" / "clusters" / "yaml" / "data").mkdir(parents=True)
    (package / "defs" / "inline" / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS_PY)
    (package / "defs" / "__init__.py").write_text("")
    (package / "defs" / "clusters" / "defs.yaml").write_text(FOLDER_DEFS)
    (package / "defs" / "clusters" / "yaml" / "orders.yaml").write_text(ORDERS_CLUSTER)
    (package / "defs" / "clusters" / "yaml" / "data" / "orders.csv").write_text(ORDERS_CSV)
    if broken:
        (package / "defs" / "clusters" / "yaml" / "broken.yaml").write_text(BROKEN_CLUSTER)
    inline = INLINE_DEFS.replace("exospherehost/sql", "exospherehost/sqll") if inline_typo else INLINE_DEFS
    (package / "defs" / "inline" / "defs.yaml").write_text(inline)
    (package / "defs" / "inline" / "data" / "orders.csv").write_text(ORDERS_CSV)
    home = root / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return root


def registry_dist(folder: Path) -> Path:
    """A distribution on PYTHONPATH declaring pyproject's `dagster_dg_cli.registry_modules` entry points, as the
    installed exo-dagster does once reinstalled (the shared environment may predate the entry)."""
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "dagster_dg_cli.registry_modules"
    ]
    dist = folder / "exo_dagster_dg_registry_test-0.0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exo-dagster-dg-registry-test\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[dagster_dg_cli.registry_modules]\n" + "".join(f"{name} = {value}\n" for name, value in table.items())
    )
    return folder


def project_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
    # this checkout's exo_dagster (not whichever the environment installed), and the registry entry point
    env.update(
        PATH=f"{EXE}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=sys.prefix,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(registry_dist(project / "registry"))]),
        DAGSTER_HOME=str(project / "home"),
        EXO_DATA_DIR=str(project / "exo"),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
        COLUMNS="200",
    )
    return env


def dg(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXE / "dg"), *args], cwd=project, env=project_env(project), capture_output=True, text=True, timeout=timeout
    )


def output(result: subprocess.CompletedProcess) -> str:
    return f"rc={result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_project(tmp_path_factory.mktemp("dg_project"))


def test_dg_list_defs_shows_the_clusters_of_a_folder_and_of_an_inline_defs_yaml(project):
    result = dg(project, "list", "defs", "--json")
    assert result.returncode == 0, output(result)
    defs = json.loads(result.stdout)
    assert {job["name"] for job in defs["jobs"]} >= {"acme__orders", "acme__inline"}, output(result)
    keys = {asset["asset_key"] for asset in defs["assets"]}
    assert {"acme/orders/orders", "acme/orders/totals", "acme/inline/orders", "acme/inline/totals"} <= keys
    assert not [k for k in keys if k.startswith("exo_errors/")], keys
    # exo_io: step outputs; io_manager: ops' in-between values, beside remote outputs (storage/intermediates.py)
    assert [r["name"] for r in defs.get("resources", [])] == ["exo_io", "io_manager"], defs.get("resources")


def test_dg_check_defs_passes_for_good_clusters(project):
    result = dg(project, "check", "defs")
    assert result.returncode == 0, output(result)
    assert "All definitions loaded successfully" in result.stdout + result.stderr, output(result)


def test_dg_launch_runs_a_cluster_job_to_success(project):
    result = dg(project, "launch", "--job", "acme__orders")
    assert result.returncode == 0, output(result)
    assert "RUN_SUCCESS" in result.stdout + result.stderr, output(result)
    totals = pl.read_parquet(project / "exo" / "outputs" / "acme__orders" / "totals.parquet")
    assert totals.rows() == [("eu", 8), ("us", 4)]
    result = dg(project, "launch", "--job", "acme__inline")  # the inline cluster reads data/ next to its defs.yaml
    assert result.returncode == 0, output(result)
    assert pl.read_parquet(project / "exo" / "outputs" / "acme__inline" / "totals.parquet").rows() == [(3,)]


def test_dg_list_components_finds_the_cluster_component(project):
    result = dg(project, "list", "components", "--json")
    assert result.returncode == 0, output(result)
    assert "exo_dagster.ClusterComponent" in {item["key"] for item in json.loads(result.stdout)["items"]}, output(
        result
    )


def test_a_broken_cluster_file_is_an_error_asset_and_fails_dg_check_defs_located(tmp_path):
    project = write_project(tmp_path, broken=True)
    listed = dg(project, "list", "defs", "--json")
    assert listed.returncode == 0, output(listed)  # isolated: the healthy clusters load
    defs = json.loads(listed.stdout)
    assert {"acme__orders", "acme__inline"} <= {job["name"] for job in defs["jobs"]}
    assert [a["asset_key"] for a in defs["assets"] if a["asset_key"].startswith("exo_errors/broken_")], defs["assets"]
    checked = dg(project, "check", "defs")
    assert checked.returncode != 0, output(checked)
    broken = project / PACKAGE / "defs" / "clusters" / "yaml" / "broken.yaml"
    assert (
        f"{broken}:6:13: error: unknown satellite `satellite/exospherehost/read-tabel`"
        in checked.stdout + checked.stderr
    ), output(checked)


def test_an_inline_cluster_error_points_at_its_line_in_defs_yaml(tmp_path):
    project = write_project(tmp_path, inline_typo=True)
    checked = dg(project, "check", "defs")
    assert checked.returncode != 0, output(checked)
    defs_yaml = project / PACKAGE / "defs" / "inline" / "defs.yaml"
    text = checked.stdout + checked.stderr
    assert f"{defs_yaml}:13:17: error: unknown satellite `satellite/exospherehost/sqll`" in text, output(checked)
    assert "uses: satellite/exospherehost/sqll" in text  # the real line, quoted


JOBS_QUERY = """
query { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name jobs { name } } } } }
"""


def test_dg_dev_serves_the_cluster_jobs(project):
    port = free_port()
    log = project / "dg_dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EXE / "dg"), "dev", "-p", str(port), "-h", "127.0.0.1"],
            cwd=project,
            env=project_env(project),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, jobs = time.monotonic() + 180, set()
        while time.monotonic() < deadline and not {"acme__orders", "acme__inline"} <= jobs:
            assert proc.poll() is None, log.read_text()[-5000:]
            jobs = _jobs(port)
            time.sleep(1)
        assert {"acme__orders", "acme__inline"} <= jobs, f"{jobs}\n{log.read_text()[-5000:]}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _jobs(port: int) -> set[str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        data=json.dumps({"query": JOBS_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return set()
    repos = (body.get("data") or {}).get("repositoriesOrError") or {}
    return {job["name"] for node in repos.get("nodes", []) for job in node["jobs"]}


# -- in process: the pieces ------------------------------------------------------------------------


def test_located_text_keeps_lines_and_columns_of_the_inline_value():
    from exo_dagster.component import located_text

    text = "type: x\nattributes:\n  cluster:\n    version: 1\n    cluster: {a: 1}\n  other: 2\n"
    located = located_text(text, 3, ["attributes", "cluster"])
    assert located is not None
    assert located.splitlines() == ["", "", "", "    version: 1", "    cluster: {a: 1}", ""]
    flow = located_text("attributes: {cluster: {version: 1}}\n", 1, ["attributes", "cluster"])
    assert flow == " " * 22 + "{version: 1}\n"


def test_a_python_built_inline_cluster_is_located_in_a_named_pseudo_file(tmp_path, monkeypatch):
    import dagster as dg
    from dagster.components.core.component_tree import ComponentTree

    from exo_dagster import ClusterComponent
    from exo_dagster.spec.errors import SpecError

    monkeypatch.setenv("EXO_STRICT_LOAD", "1")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    data = {
        "version": "0.0.1b",
        "cluster": {
            "identifier": "acme/py",
            "satellites": [{"name": "Read", "uses": "satellite/exospherehost/read-tabel"}],
        },
    }
    context = ComponentTree.for_test().load_context
    with pytest.raises(SpecError) as caught:
        ClusterComponent(cluster=data).build_defs(context)
    assert "defs.yaml#attributes.cluster:" in str(caught.value) and "read-tabel" in str(caught.value)
    data["cluster"]["satellites"][0]["uses"] = "satellite/exospherehost/read-table"
    data["cluster"]["satellites"][0]["config"] = {"path": "orders.csv"}
    defs = ClusterComponent(cluster=data).build_defs(context)
    assert isinstance(defs, dg.Definitions) and [j.name for j in defs.jobs] == ["acme__py"]
