"""The UI as a Dagster user first sees it, in a real browser: headless Chromium (Debian's `chromium`
package, no browser download) driven by Playwright, against `dagster dev` on loopback with this
repository's workspace.yaml, plus one broken cluster file from EXO_CLUSTERS.

Screenshots of every page are written to the test's tmp folder (printed on failure)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from exo_dagster import load_cluster_file
from tests.loopback import free_port
from tests.services import chromium_path

pytestmark = pytest.mark.slow  # `dagster dev` and a browser

REPO = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 240
GROUP = "exospherehost__orders_report"

BROKEN = """\
version: 0.0.1b
cluster:
  identifier: ui/broken
  satellites:
    - name: Files
      uses: satellite/exospherehost/get-filez
      config: {folder-path: data}
"""


PARAMS = """\
version: 0.0.1b
cluster:
  identifier: ui/params
  inputs:
    region: {type: string, default: west, description: Sales region}
    since:  {type: date, required: true, description: First day of the report}
    tier:   {type: enum, values: [gold, silver], default: gold}
  satellites:
    - name: Query
      uses: satellite/exospherehost/sql
      config: {query: "select ${{ inputs.region }} as region, ${{ inputs.since }} as since"}
"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    chromium = chromium_path()  # before `dagster dev` starts: skipped (or failed under CI) without a browser
    root = tmp_path_factory.mktemp("ui")
    (root / "clusters").mkdir()
    (root / "clusters" / "broken.yaml").write_text(BROKEN)
    (root / "clusters" / "params.yaml").write_text(PARAMS)
    env = {k: v for k, v in os.environ.items() if k not in ("EXO_CLUSTERS", "EXO_STRICT_LOAD", "EXO_SATELLITE_PATH")}
    env.update(
        DAGSTER_HOME=str(root / "home"),
        EXO_DATA_DIR=str(root / "exo"),
        EXO_CLUSTERS=str(root / "clusters"),
        PYTHONUNBUFFERED="1",
    )
    (root / "home").mkdir()
    port = free_port()
    log = open(root / "dagster-dev.log", "wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(EXE / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            assert proc.poll() is None, (root / "dagster-dev.log").read_text()[-4000:]
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            assert time.monotonic() - started < STARTUP_TIMEOUT_S, (root / "dagster-dev.log").read_text()[-4000:]
            time.sleep(0.5)
        print(f"dagster dev answered after {time.monotonic() - started:.1f} s")

        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(60_000)

            class UI:
                pass

            ui = UI()
            ui.root, ui.base, ui.page, ui.env = root, base, page, env
            ui.instance = dg.DagsterInstance.from_config(str(root / "home"))
            ui.shots = []

            def goto(path: str, shot: str):
                page.goto(base + path, wait_until="networkidle")
                with contextlib.suppress(Exception):  # Dagster's first-visit "Join the community" dialog
                    page.get_by_role("button", name="Skip").click(timeout=2_000)
                shoot(shot)

            def shoot(name: str):
                path = root / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                ui.shots.append(path)

            ui.goto, ui.shoot = goto, shoot
            yield ui
            browser.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _wait_text(page, text: str, timeout_s: float = 60) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)


def test_the_demo_group_shows_every_step(ui):
    cluster = load_cluster_file(REPO / "definitions" / "demo.yaml")
    ui.goto(f'/asset-groups~group%3A"{GROUP}"', "group")
    graph = ui.page.locator("body")
    for step in cluster.steps:
        _wait_text(ui.page, step.identifier)
    text = graph.inner_text()
    missing = [s.identifier for s in cluster.steps if s.identifier not in text]
    assert not missing, f"steps missing from the group's lineage: {missing} (screenshots: {ui.shots})"
    # Dagster 1.13's lineage nodes show the key only; the catalog's rows lead with each step's name
    ui.goto("/assets", "catalog-names")
    _wait_text(ui.page, cluster.steps[0].spec.name)
    text = ui.page.locator("body").inner_text()
    unnamed = [s.spec.name for s in cluster.steps if s.spec.name not in text]
    assert not unnamed, f"the catalog does not show these steps' names: {unnamed} (screenshots: {ui.shots})"


def test_materialize_all_runs_to_success(ui):
    ui.goto(f'/asset-groups~group%3A"{GROUP}"', "group-before-materialize")
    before = {r.run_id for r in ui.instance.get_runs()}
    ui.page.get_by_role("button", name="Materialize all").click()
    _wait_text(ui.page, "Launched run")
    ui.shoot("launched")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        runs = [r for r in ui.instance.get_runs() if r.run_id not in before]
        if runs and runs[0].is_finished:
            break
        assert time.monotonic() < deadline, f"no finished run after Materialize all (screenshots: {ui.shots})"
        time.sleep(1)
    [run] = runs
    assert run.status == dg.DagsterRunStatus.SUCCESS, [
        e.message for e in ui.instance.all_logs(run.run_id) if e.message
    ][-20:]
    ui.goto(f"/runs/{run.run_id}", "run")
    _wait_text(ui.page, "Success")
    # step keys lead with the step's identifier, so the Gantt bars and the log's OP column (which cut
    # long names) show which step they are
    text = ui.page.locator("body").inner_text()
    for step in ("files", "orders", "revenue", "report"):
        assert f"{step}__exospherehost__orders_report" in text or f"{step}__exosph" in text, step


def test_the_asset_page_shows_its_columns_and_its_yaml_source(ui):
    ui.goto("/assets/exospherehost/orders_report/orders", "asset-orders")
    _wait_text(ui.page, "Columns")
    text = ui.page.locator("body").inner_text()
    columns = text[text.index("Columns") :]
    for column, kind in (("order_id", "Int64"), ("region", "String"), ("unit_price", "Float64")):
        assert column in columns and kind in columns, (
            f"column {column} ({kind}) not in the asset's column table (screenshots: {ui.shots})"
        )
    assert "demo.yaml:" in text, "the asset page does not link the step's YAML (its code reference)"
    assert "Read orders" in text  # the step's name leads its description


def test_a_broken_cluster_file_shows_its_located_error(ui):
    ui.goto("/assets", "catalog")
    _wait_text(ui.page, "exo_errors")
    errors = [
        a
        for a in ui.page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        if a and a.startswith("/assets/exo_errors/broken_")
    ]
    assert errors, f"no exo_errors asset for the broken file in the catalog (screenshots: {ui.shots})"
    ui.goto(urllib.parse.unquote(errors[0].split("?")[0]), "broken")
    text = ui.page.locator("body").inner_text()
    assert "broken.yaml:6:13" in text and "unknown satellite" in text, text[:2000]
    assert "get-files" in text  # the fix it suggests


def test_the_launchpad_asks_for_the_clusters_inputs(ui):
    """A cluster with `inputs:` opens a Launchpad that asks for its inputs: defaults filled in, a missing
    required input named, and "Scaffold missing config" adding it."""
    ui.goto("/locations/definitions/jobs/ui__params/playground", "launchpad")
    page = ui.page
    _wait_text(page, "inputs__ui__params")
    text = page.locator("body").inner_text()
    # the defaults are filled in; the required date is missing, and the Launchpad names it
    assert "region: west" in text and "tier: gold" in text, f"screenshots: {ui.shots}"
    assert 'Missing required config entry "since"' in text, f"screenshots: {ui.shots}"
    page.get_by_role("button", name="Scaffold missing config").click()
    _wait_text(page, "resources.inputs__ui__params.config.since")  # the dialog lists the missing path
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("since:", exact=False).first.wait_for(state="visible")
    ui.shoot("launchpad-scaffolded")
    editor = page.locator(".CodeMirror").first.inner_text()
    assert "since: ''" in editor and "region: 'west'" in editor and "tier: 'gold'" in editor, editor


SKIPPING = """\
version: 0.0.1b
cluster:
  identifier: ui/skips
  satellites:
    - name: Orders
      uses: satellite/exospherehost/sql
      identifier: orders
      config: {query: "select i from range(0) t(i)"}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      skip-when-empty: true
      config: {query: "select count(*) as n from orders"}
"""


def test_the_run_page_shows_a_step_skipped_for_an_empty_input(ui, monkeypatch):
    """`skip-when-empty`: the run succeeds, its log shows the step's STEP_SKIPPED and the gate's reason."""
    path = ui.root / "skips.yaml"
    path.write_text(SKIPPING)
    monkeypatch.setenv("EXO_DATA_DIR", ui.env["EXO_DATA_DIR"])
    job = dg.build_reconstructable_job("exo_dagster.cli", "cluster_job", reconstructable_args=(str(path),))
    with dg.execute_job(job, instance=ui.instance, raise_on_error=False) as result:
        assert result.success
        run_id = result.run_id
    ui.goto(f"/runs/{run_id}", "run-skipped")
    _wait_text(ui.page, "Success")
    _wait_text(ui.page, "Skipped execution of step")
    ui.shoot("run-skipped")
    text = ui.page.locator("body").inner_text()
    assert 'Skipped execution of step "totals__ui__skips.totals__ui__skips"' in text, f"screenshots: {ui.shots}"
    assert "input `orders` has no rows: skipping step `totals`" in text, f"screenshots: {ui.shots}"
    assert "STEP_SKIPPED" in text and "Succeeded (2)" in text  # orders and the gate; the step itself did not run
