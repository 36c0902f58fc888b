"""`exo init DIR`: a new dg project that works with nothing else installed or written, and shows only its clusters.

One project, written by the real `exo` command, serves every subprocess test below: `dg list defs`, `dg check
defs`, `dg launch --job`, `exo validate`, `exo run`, `exo query` and `dg dev`, as the README and the project's
own README show them (the tests run the commands parsed from both). DAGSTER_HOME is unset and EXO_CLUSTERS names
this repository's demos, so a passing run proves the project's `.env` names its instance and the demos stay out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.loopback import free_port

pytestmark = pytest.mark.slow  # seconds per test (measured): real runs, subprocesses or services

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent
FOLDER = "my-clusters"
JOB = "my_clusters__orders_report"
# the README's `exo init` block, as the tests below run it
README_COMMANDS = [
    ["exo", "init", FOLDER],
    ["cd", FOLDER],
    ["dg", "list", "defs"],
    ["dg", "check", "defs"],
    ["dg", "launch", "--job", JOB],
    ["exo", "validate", "clusters"],
    ["exo", "run", "clusters/orders.yaml"],
    ["dg", "dev"],
]
# the generated project's README block
PROJECT_COMMANDS = [
    ["dg", "list", "defs"],
    ["dg", "check", "defs"],
    ["dg", "launch", "--job", JOB],
    ["exo", "validate", "clusters"],
    ["exo", "run", "clusters/orders.yaml"],
    ["exo", "query", "select * from orders_report.revenue"],
    ["dg", "dev"],
]
SECONDS: dict[str, float] = {}  # exo init, then dg dev to its first page: printed by the dg dev test
REVENUE = [("east", 1, 5, 6.25), ("north", 2, 5, 31.0), ("south", 1, 1, 20.0)]


def env() -> dict[str, str]:
    """No DAGSTER_HOME or exo settings from outside; EXO_CLUSTERS names the repository's demos, which must stay out."""
    cleared = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EXO_", "DAGSTER_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    # this checkout's exo_dagster, as tests/exo_dagster/test_component.py runs it
    return {
        **cleared,
        "PATH": f"{EXE}{os.pathsep}{cleared.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "EXO_CLUSTERS": str(ROOT / "definitions"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }


def run(cwd: Path, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    assert args[0] in ("exo", "dg"), args
    return subprocess.run(
        [str(EXE / args[0]), *args[1:]], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def output(result: subprocess.CompletedProcess) -> str:
    return f"rc={result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"


def bash_block(text: str, containing: str) -> list[list[str]]:
    """The commands of the first ```bash block holding `containing`: comments dropped, `a && b` split."""
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        if containing in block:
            commands = []
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                while words:
                    cut = words.index("&&") if "&&" in words else len(words)
                    commands.append(words[:cut])
                    words = words[cut + 1 :]
            return commands
    raise AssertionError(f"no ```bash block with {containing!r}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("init")
    started = time.monotonic()
    result = run(parent, README_COMMANDS[0])
    assert result.returncode == 0, output(result)
    project = parent / FOLDER
    SECONDS["init"] = time.monotonic() - started
    return project


def test_the_readmes_show_the_commands_these_tests_run(project):
    assert bash_block((ROOT / "README.md").read_text(), "exo init") == README_COMMANDS
    assert bash_block((ROOT / "docs" / "getting-started.md").read_text(), "exo init") == README_COMMANDS
    assert bash_block((project / "README.md").read_text(), "dg launch") == PROJECT_COMMANDS


def test_init_writes_a_dg_project_with_its_instance_named_in_dotenv(project):
    import tomllib

    import yaml
    from dotenv import dotenv_values

    from exo_dagster.execution.instance_defaults import DEFAULT_DAGSTER_YAML

    dg_config = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["dg"]
    assert dg_config["directory_type"] == "project" and dg_config["project"]["root_module"] == "my_clusters"
    defs = yaml.safe_load((project / "my_clusters" / "defs" / "clusters" / "defs.yaml").read_text())
    assert defs["type"] == "exo_dagster.ClusterComponent"
    component_folder = project / "my_clusters" / "defs" / "clusters"
    assert (component_folder / defs["attributes"]["path"]).resolve() == project / "clusters"
    assert dotenv_values(project / ".env") == {"DAGSTER_HOME": str(project / ".dagster")}
    assert (project / ".dagster" / "dagster.yaml").read_text() == DEFAULT_DAGSTER_YAML
    assert {".dagster/", ".env"} <= set((project / ".gitignore").read_text().splitlines())


UI_QUERY = (
    "query { repositoriesOrError { ... on RepositoryConnection { nodes { location { name } jobs { name } } } }"
    " instance { daemonHealth { allDaemonStatuses { daemonType required } } } }"
)


def test_dg_dev_first_start_serves_only_the_projects_jobs_with_exos_instance_defaults(project, capsys):
    """The first Dagster process on the new home runs on exo's dagster.yaml (run monitoring's daemon required),
    which `exo init` wrote up front."""
    port = free_port()
    log = project.parent / "dg_dev.log"
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(EXE / "dg"), "dev", "-p", str(port), "-h", "127.0.0.1"],
            cwd=project,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        page, page_seconds, locations, instance = None, None, {}, {}
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not locations:
            assert proc.poll() is None, log.read_text()[-5000:]
            page = page or _get(port, "/server_info")
            if page is not None and page_seconds is None:
                page_seconds = time.monotonic() - started
            locations, instance = _graphql(port) if page else ({}, {})
            time.sleep(0.5)
        assert page is not None and "dagster_webserver_version" in page, log.read_text()[-5000:]
        assert locations == {FOLDER: {"__ASSET_JOB", JOB}}, f"{locations}\n{log.read_text()[-5000:]}"
        required = {d["daemonType"] for d in instance["daemonHealth"]["allDaemonStatuses"] if d["required"]}
        assert "MONITORING" in required, instance  # Dagster's default has run monitoring off
        with capsys.disabled():
            print(f"\nexo init {SECONDS['init']:.1f} s + dg dev to /server_info {page_seconds:.1f} s")
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM for the whole process group (dg dev, its webserver, daemon and code servers); SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children dg dev left behind


def _get(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _graphql(port: int) -> tuple[dict[str, set[str]], dict]:
    """The jobs of each code location, and the instance's daemons and queue, as the UI's server reports them."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        method="POST",
        data=json.dumps({"query": UI_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return {}, {}
    data = body.get("data") or {}
    nodes = (data.get("repositoriesOrError") or {}).get("nodes") or []
    jobs = {node["location"]["name"]: {job["name"] for job in node["jobs"]} for node in nodes}
    return jobs, data.get("instance") or {}


def test_dg_list_defs_shows_only_the_projects_cluster(project):
    result = run(project, PROJECT_COMMANDS[0])
    assert result.returncode == 0, output(result)
    sections = re.findall(r"^│ (\w[\w ]*?) +│", result.stdout, re.M)
    assert sections == ["Assets", "Jobs", "Resources"], output(result)  # no schedule: the demo's cron is not here
    jobs = result.stdout[result.stdout.index("│ Jobs") : result.stdout.index("│ Resources")]
    assert re.findall(r"│ │ (\w+) ", jobs) == [JOB], output(result)
    assets = re.findall(r"│ │ ([\w/]+/[\w/]+) ", result.stdout)
    assert sorted(assets) == [f"my_clusters/orders_report/{step}" for step in ("orders", "report", "revenue")]
    assert "exospherehost__" not in result.stdout and "ticket_dedupe" not in result.stdout, output(result)


def test_dg_check_defs_passes(project):
    result = run(project, PROJECT_COMMANDS[1])
    assert result.returncode == 0, output(result)
    assert "All definitions loaded successfully" in result.stdout, output(result)


def test_dg_launch_and_exo_run_run_the_example_in_the_projects_instance(project):
    launched = run(project, PROJECT_COMMANDS[2])
    assert launched.returncode == 0 and "RUN_SUCCESS" in launched.stdout + launched.stderr, output(launched)
    report = project / ".dagster" / "exo" / "reports" / "orders-by-region.parquet"
    assert pl.read_parquet(report).rows() == REVENUE
    report.unlink()
    ran = run(project, PROJECT_COMMANDS[4])
    assert ran.returncode == 0 and re.search(rf"^run \S+ of {JOB}: success$", ran.stdout, re.M), output(ran)
    assert pl.read_parquet(report).rows() == REVENUE  # the same instance and data folder, from .env
    queried = run(project, PROJECT_COMMANDS[5])
    assert queried.returncode == 0 and "north        2      5     31.0" in queried.stdout, output(queried)


def test_exo_validate_checks_the_projects_clusters(project):
    result = run(project, PROJECT_COMMANDS[3])
    assert result.returncode == 0, output(result)
    assert result.stdout.splitlines() == [
        f"ok  {project / 'clusters' / 'orders.yaml'}: cluster/my-clusters/orders-report -> job {JOB} (3 steps)"
    ]


def test_init_refuses_a_non_empty_folder_in_one_line(project):
    result = run(project.parent, README_COMMANDS[0])
    assert result.returncode == 1, output(result)
    assert result.stderr.count("\n") == 1 and "is not empty" in result.stderr and "--force" in result.stderr


# -- in process: names and refusals ----------------------------------------------------------------


def test_names_come_from_the_folder_and_refuse_what_would_not_import(tmp_path):
    from exo_dagster.project_init import InitError, init_project, names_for

    assert names_for(Path("/x/My Clusters.v2")) == ("my_clusters_v2", "my-clusters-v2")
    assert names_for(Path("/x/whatever"), "team_a") == ("team_a", "team-a")
    for bad in ("2nd", "class", "---", "json", "dagster"):  # a digit first, a keyword, nothing left, shadowing
        with pytest.raises(InitError, match="--name NAME"):
            names_for(Path("/x") / bad)
    (tmp_path / "file").write_text("")
    with pytest.raises(InitError, match="is a file"):
        init_project(tmp_path / "file")
    with pytest.raises(InitError, match="is not empty"):
        init_project(tmp_path, name="mine")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # a refusal writes nothing


def test_force_writes_into_a_non_empty_folder_and_keeps_the_users_env_ignores_and_dagster_yaml(tmp_path):
    from dotenv import dotenv_values

    from exo_dagster.project_init import init_project

    (tmp_path / ".dagster").mkdir()
    (tmp_path / ".dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".env").write_text("API_KEY=secret\nexport DAGSTER_HOME=/elsewhere\n")
    (tmp_path / ".gitignore").write_text("*.log\n.env\n")
    made = init_project(tmp_path, name="acme_orders", force=True)
    assert dotenv_values(tmp_path / ".env") == {"API_KEY": "secret", "DAGSTER_HOME": str(tmp_path / ".dagster")}
    ignored = (tmp_path / ".gitignore").read_text().splitlines()
    assert ignored[:2] == ["*.log", ".env"] and ".dagster/" in ignored and ignored.count(".env") == 1
    assert made.job == "acme_orders__orders_report" and made.package == "acme_orders"
    assert (tmp_path / "acme_orders" / "definitions.py").is_file() and (tmp_path / "clusters" / "orders.yaml").is_file()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / ".dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    assert "identifier: acme-orders/orders-report" in (tmp_path / "clusters" / "orders.yaml").read_text()


def test_the_dotenv_value_reads_back_as_the_exact_path_or_init_refuses():
    import io

    from dotenv import dotenv_values

    from exo_dagster.project_init import InitError, _dotenv_value

    for path in ("/srv/a b/#not a comment", "/srv/$HOME/x", "/srv/it's", '/srv/"q"\\x', '/srv/it\'s "both"'):
        line = f"DAGSTER_HOME={_dotenv_value(Path(path))}\n"
        assert dotenv_values(stream=io.StringIO(line)) == {"DAGSTER_HOME": path}, line
    for path in ("/srv/${HOME}", "/srv/a\nb"):  # python-dotenv expands ${...} even in quotes
        with pytest.raises(InitError, match="read back unchanged"):
            _dotenv_value(Path(path))
