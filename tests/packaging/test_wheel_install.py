"""The built wheel, installed non-editable into a fresh virtual environment, works from an empty folder.

This is how a team adopts exo-dagster in its own Dagster project: `pip install exo-dagster`, no checkout.
The fresh environment gets exo from the wheel only (`pip install --no-deps`); its third-party dependencies
are this test environment's, linked in one by one, without anything of exo's (no editable finder, no
dist-info of the checkout), so nothing of the repository can leak in: not `definitions/`, not `tests/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow  # builds wheels and installs them into fresh virtual environments

REPO = Path(__file__).resolve().parents[2]

# Entries of this environment's site-packages that belong to the checkout's editable install, not the wheel.
_CHECKOUT_ENTRIES = ("exo_dagster", "__editable__", "satellites", "exo-dagster", "__pycache__")


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks or would track (a clean clone once committed): a local build folder cannot change the
    wheel."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listing.decode().split("\0")):
        src, dst = REPO / name, dest / name
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _tracked_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (built,) = out.glob("exo_dagster-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = venv / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.startswith(_CHECKOUT_ENTRIES) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    (site / "zz_test_deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return venv


def _env(home: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["DAGSTER_HOME"] = str(home)
    return env


def test_wheel_holds_the_library_and_not_the_repository(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "exo_dagster/location.py" in names and "satellites/tables/sql.py" in names
    assert not [n for n in names if n.startswith(("definitions/", "tests/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "exo = exo_dagster.cli:main" in text and "[exo_dagster.satellite_index]" in text


def test_a_cluster_runs_from_an_empty_folder(fresh_venv, tmp_path):
    project = tmp_path / "my-project"
    (project / "clusters" / "data").mkdir(parents=True)
    (project / "clusters" / "data" / "orders.csv").write_text("region,amount\neast,10\nwest,5\neast,7\n")
    (project / "clusters" / "orders.yaml").write_text(
        textwrap.dedent("""\
        version: 0.0.1b
        cluster:
          identifier: acme/orders
          satellites:
            - {name: Read orders, uses: satellite/exospherehost/read-table, identifier: orders,
               config: {path: data/orders.csv}}
            - name: Totals
              uses: satellite/exospherehost/sql
              identifier: totals
              config:
                query: select region, sum(amount) as total from ${{ satellites.orders.output }} group by region
    """)
    )
    home = tmp_path / "home"
    home.mkdir()
    exo = str(fresh_venv / "bin" / "exo")
    where = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import exo_dagster, satellites; print(exo_dagster.__file__); print(satellites.__file__)",
        ],
        cwd=project,
        env=_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(line.startswith(str(fresh_venv)) for line in where.stdout.split()), where.stdout

    check = subprocess.run(
        [exo, "validate", "clusters"], cwd=project, env=_env(home), capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stderr
    assert "cluster/acme/orders -> job acme__orders (2 steps)" in check.stdout
    assert "exospherehost" not in check.stdout  # none of the repository's demo clusters

    run = subprocess.run(
        [exo, "run", "clusters/orders.yaml"], cwd=project, env=_env(home), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "success" in run.stdout
    outputs = list((home / "exo" / "outputs").rglob("totals.parquet"))
    assert len(outputs) == 1, outputs
    totals = dict(pl.read_parquet(outputs[0]).select("region", "total").iter_rows())
    assert totals == {"east": 17, "west": 5}

    listing = subprocess.run(
        [exo, "satellites"], cwd=project, env=_env(home), capture_output=True, text=True, timeout=300
    )
    assert listing.returncode == 0, listing.stderr
    ids = [line.split("@")[0] for line in listing.stdout.splitlines() if line.startswith("satellite/")]
    assert "satellite/exospherehost/sql" in ids and len(ids) >= 16


def test_exo_init_from_the_wheel_makes_a_project_of_its_own(fresh_venv, tmp_path):
    home_unset = {k: v for k, v in _env(tmp_path).items() if k != "DAGSTER_HOME"}
    exo = str(fresh_venv / "bin" / "exo")
    made = subprocess.run(
        [exo, "init", "team-pipelines"], cwd=tmp_path, env=home_unset, capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stdout + made.stderr
    project = tmp_path / "team-pipelines"
    check = subprocess.run(
        [exo, "validate", "clusters"], cwd=project, env=home_unset, capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    oks = [line for line in check.stdout.splitlines() if line.startswith("ok ")]
    assert len(oks) == 1 and "exospherehost" not in check.stdout, check.stdout
