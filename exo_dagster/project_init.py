"""`exo init DIR`: a new `dg` project of one's own, in Dagster's Components layout, whose code location is
exactly the clusters in `DIR/clusters` (never this repository's demos, never EXO_CLUSTERS).

The templates are strings here, so the wheel carries them without package data. The project is laid out as
`create-dagster project` lays one out (pyproject.toml with `[tool.dg]`, a package with `definitions.py` and
`defs/`), flat rather than under `src/`, so `dg` imports it from the project folder without installing it
into the environment where exo runs. DAGSTER_HOME is `DIR/.dagster`, named in `DIR/.env`: Dagster's CLIs
(`dg dev`, `dg launch`, `dg check defs`) and exo's read `.env` from the current folder, and `DAGSTER_HOME`
must be absolute, so the file holds this machine's path. exo's dagster.yaml and the instance storage are
written there up front, so the first `dg dev` already runs with run monitoring and exo's run queue.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
from dataclasses import dataclass
from pathlib import Path

from exo_dagster.errors import UserError

CLUSTER_FILE = "clusters/orders.yaml"
HOME = ".dagster"


class InitError(UserError):
    """A one-line reason `exo init` wrote nothing, with the fix."""


@dataclass(frozen=True)
class Project:
    root: Path
    package: str
    job: str
    home: Path
    files: tuple[str, ...]


def names_for(folder: Path, name: str | None = None) -> tuple[str, str]:
    """(Python package, cluster project) for a project folder: `my-clusters` gives `my_clusters` and `my-clusters`."""
    base = name or folder.name
    package = re.sub(r"\W", "_", base.strip().lower(), flags=re.ASCII).strip("_")
    if not package or not package.isidentifier() or keyword.iskeyword(package) or package[0].isdigit():
        raise InitError(f"`{base}` does not make a Python package name; give one with --name NAME (e.g. my_clusters)")
    if importlib.util.find_spec(package) is not None:  # a local package of that name would shadow it for dg and exo
        raise InitError(
            f"`{package}` is already an importable Python module, which the project's package would "
            "shadow; give another with --name NAME"
        )
    return package, package.replace("_", "-")


def init_project(folder: str | os.PathLike, *, name: str | None = None, force: bool = False) -> Project:
    """Write the project into `folder` (created when missing); refuse a non-empty one unless `force` (which
    replaces only the files written here, merges into an existing .env and .gitignore, keeps a dagster.yaml)."""
    from exo_dagster.execution.instance_home import prepare

    root = Path(folder).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise InitError(f"{root} is a file; give a new or empty folder")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise InitError(
            f"{root} is not empty; give a new or empty folder, or --force to write the project's files "
            "into it (files of the same name are replaced)"
        )
    package, project = names_for(root, name)
    job = f"{package}__orders_report"
    home = root / HOME
    files = _files(package, project, job, root.name, _dotenv_value(home))
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative in (".env", ".gitignore") and path.is_file():  # --force: keep the user's secrets and ignores
            replaces = "DAGSTER_HOME=" if relative == ".env" else None
            text = _merged(path.read_text(encoding="utf-8"), text, replaces)
        path.write_text(text, encoding="utf-8")
    prepare(home)  # exo's dagster.yaml (kept when one exists) and the storage, before any Dagster process opens it
    return Project(root, package, job, home, tuple(files))


def _merged(old: str, new: str, replaces: str | None) -> str:
    """`old`'s lines (less those setting `replaces`), then the lines of `new` it lacks."""
    kept = [
        line
        for line in old.splitlines()
        if not (replaces and line.strip().removeprefix("export ").lstrip().startswith(replaces))
    ]
    return "\n".join(kept + [line for line in new.splitlines() if line not in kept]) + "\n"


def _dotenv_value(home: Path) -> str:
    """`home` as a .env value that Dagster's reader (python-dotenv) gives back unchanged: quoted, since a path may
    hold spaces or `#`; it expands `${...}` even inside quotes, so a path holding that is refused."""
    import io

    from dotenv import dotenv_values

    text = str(home)
    value = f"'{text}'" if "'" not in text else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "${" in text or "\n" in text or dotenv_values(stream=io.StringIO(f"K={value}\n")).get("K") != text:
        raise InitError(
            f"the folder path {text!r} cannot be written in a .env file (which Dagster reads DAGSTER_HOME "
            "from) and read back unchanged; choose a folder whose path has no `${` or newline"
        )
    return value


def _files(package: str, project: str, job: str, folder: str, home: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        exo = f"exo-dagster[ui,dg]>={version('exo-dagster')}"
    except PackageNotFoundError:
        exo = "exo-dagster[ui,dg]"
    values = {
        "package": package,
        "project": project,
        "job": job,
        "folder": folder,
        "home": home,
        "exo": exo,
        "cluster_file": CLUSTER_FILE,
        "home_name": HOME,
    }
    return {
        "pyproject.toml": PYPROJECT.format(**values),
        "README.md": README.format(**values),
        ".gitignore": GITIGNORE.format(**values),
        ".env": DOTENV.format(**values),
        f"{package}/__init__.py": "",
        f"{package}/definitions.py": DEFINITIONS_PY,
        f"{package}/defs/__init__.py": "",
        f"{package}/defs/clusters/defs.yaml": DEFS_YAML,
        CLUSTER_FILE: CLUSTER.format(**values),
        "clusters/data/orders.csv": ORDERS_CSV,
    }


PYPROJECT = """\
[project]
name = "{project}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["{exo}"]

[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[tool.setuptools.packages.find]
include = ["{package}*"]

# Dagster's Components layout (`create-dagster project`), flat: `dg` imports `{package}` from this folder.
[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{package}"
registry_modules = ["{package}.components.*"]
"""

DEFINITIONS_PY = """\
from pathlib import Path

from dagster import definitions, load_from_defs_folder


@definitions
def defs():
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
"""

DEFS_YAML = """\
# The project's clusters: every cluster file under the project's clusters/ folder (this path is relative to
# this file). Add more paths as a list, or another defs.yaml with a cluster inline (see exo-dagster's README).
type: exo_dagster.ClusterComponent
attributes:
  path: ../../../clusters
"""

CLUSTER = """\
# An example cluster, no AI and no network: read the order CSV next to it, total it per region with SQL,
# write the report to $DAGSTER_HOME/exo/reports/ (here {home_name}/exo/reports/). `exo schema --out FILE` writes
# the JSON Schema of cluster files for your editor; `exo satellites` lists what `uses:` can name.
version: 0.0.1b
cluster:
  identifier: {project}/orders-report
  title: Orders report
  description: Total the order files per region and write a report table.
  satellites:
    - name: Read orders
      uses: satellite/exospherehost/read-table
      identifier: orders
      config:
        path: data/orders.csv         # relative to this file

    - name: Revenue per region
      uses: satellite/exospherehost/sql
      identifier: revenue
      config:
        query: >
          select region, count(*) as orders, sum(quantity)::bigint as units,
                 round(sum(quantity * unit_price), 2) as revenue
          from orders group by region order by region

    - name: Write the report
      uses: satellite/exospherehost/write-table
      identifier: report
      config:
        path: reports/orders-by-region.parquet
      input:
        table: ${{{{ satellites.revenue.output }}}}
"""

ORDERS_CSV = """\
order_id,region,quantity,unit_price
1,north,2,9.5
2,south,1,20.0
3,north,3,4.0
4,east,5,1.25
"""

DOTENV = """\
# Read from this folder by Dagster's CLIs (dg dev, dg launch, dg check defs) and by exo: the instance folder,
# absolute as Dagster requires. Machine-local (in .gitignore): after moving the project, fix the path.
DAGSTER_HOME={home}
"""

GITIGNORE = """\
{home_name}/
.env
__pycache__/
*.egg-info/
"""

README = """\
# {folder}

A Dagster project of exo-dagster clusters, written by `exo init`. Its code location holds exactly the
clusters under `clusters/` (`{package}/defs/clusters/defs.yaml` points an `exo_dagster.ClusterComponent`
there): add a cluster file and it is a job.

Run these from this folder, in the Python environment where exo-dagster is installed
(`pip install 'exo-dagster[ui,dg]'`; the project itself needs no install):

```bash
dg list defs
dg check defs
dg launch --job {job}
exo validate clusters
exo run {cluster_file}
exo query "select * from orders_report.revenue"
dg dev
```

- `dg list defs`: the clusters' assets, jobs, schedules and sensors.
- `dg check defs`, `exo validate clusters`: check every cluster file; errors name FILE:LINE:COL.
- `dg launch --job {job}` and `exo run {cluster_file}`: run the example cluster once; its report is
  `{home_name}/exo/reports/orders-by-region.parquet`.
- `exo query`: read-only SQL over every step's output.
- `dg dev`: the UI at http://127.0.0.1:3000, with the daemon (schedules, sensors, the run queue).

Runs are recorded in the Dagster instance `{home_name}/` (DAGSTER_HOME, set in `.env`, which Dagster's CLIs and
exo read from this folder). exo wrote its `dagster.yaml` there: run monitoring (a cluster's `sla:`) and exo's run
queue (a cluster's `concurrency:`). After moving the project, fix the path in `.env`.
"""
