"""Every built-in satellite, run in one cluster against real loopback receivers: a run with a failure injected in
the middle of each effectful step (retried by the step's policy), then a re-execution of that run. The outputs must
match, and every external effect (HTTP deliveries, e-mails, LLM requests, files moved or deleted, tables written)
must happen once, whatever the retries and re-executions. The table this test asserts is the README's
"Re-running is safe" table; where an effect is repeated by design (write-table `append`), it says so."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from exo_dagster.catalog.registry import builtin_registry
from tests.loopback import free_port
from tests.satellites.openai_server import OpenAIServer

pytest.importorskip("aiosmtpd")

CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/idem
  executor: in-process
  retries: 1
  retry: {{delay: 0}}
  satellites:
    - {{name: Files, uses: satellite/exospherehost/get-files, identifier: files, config: {{folder-path: inbox}}}}
    - {{name: Orders, uses: satellite/exospherehost/read-table, identifier: orders}}
    - name: Totals
      uses: satellite/exospherehost/sql
      identifier: totals
      config:
        query: >-
          select id, customer, amount, case when id = 2 then '[[503:1]] ' else '' end || 'label order ' || id as prompt
          from orders order by id
    - name: Store
      uses: satellite/exospherehost/write-table
      identifier: store
      config: {{path: idem/orders.parquet, mode: upsert, key: [id]}}
      input: {{table: "${{{{ satellites.totals.output }}}}"}}
    - name: Log book
      uses: satellite/exospherehost/write-table
      identifier: logbook
      config: {{path: idem/logbook.parquet, mode: append}}
      input: {{table: "${{{{ satellites.totals.output }}}}"}}
    - name: Hook
      uses: satellite/exospherehost/call-webhook
      identifier: hook
      on-row-error: fail
      config: {{url: "{http}/hook"}}
      input: {{id: "$${{{{ satellites.totals.output.id }}}}", amount: "$${{{{ satellites.totals.output.amount }}}}"}}
    - name: Batch hook
      uses: satellite/exospherehost/call-webhook
      identifier: batchhook
      config: {{url: "{http}/batch", mode: per-batch}}
      input: {{table: "${{{{ satellites.totals.output }}}}"}}
    - name: Alert
      uses: satellite/exospherehost/send-alert
      identifier: alert
      config: {{format: slack, url: "{http}/alert", text: orders loaded}}
    - name: Ship logs
      uses: satellite/exospherehost/forward-logs
      identifier: shiplogs
      config: {{url: "{http}/logs", batch-size: 2}}
      input: {{table: "${{{{ satellites.totals.output }}}}"}}
    - name: Mail
      uses: satellite/exospherehost/send-email
      identifier: mail
      on-row-error: fail
      config: {{host: 127.0.0.1, port: {smtp}, security: none, from: exo@example.org, subject: your order}}
      input:
        to: "$${{{{ satellites.totals.output.customer }}}}"
        body: "$${{{{ satellites.totals.output.prompt }}}}"
    - name: Labels
      uses: satellite/exospherehost/llm-complete
      identifier: labels
      config: {{model: m, base-url: "{llm}", backoff: 0.01}}
      input: {{prompt: "$${{{{ satellites.totals.output.prompt }}}}", id: "$${{{{ satellites.totals.output.id }}}}"}}
    - name: Reason
      uses: satellite/exospherehost/deepseek-r1-distrill-llama-70b
      identifier: reason
      config: {{base-url: "{llm}"}}
      input: {{prompt: "$${{{{ satellites.totals.output.customer }}}} [[think]]"}}
    - name: Docs
      uses: satellite/exospherehost/parse-document
      identifier: docs
      input: {{paths: [docs/readme.md, docs/notes.html]}}
    - name: Chunks
      uses: satellite/exospherehost/chunk-text
      identifier: chunks
      config: {{chunk-size: 200, overlap: 0}}
    - name: Vectors
      uses: satellite/exospherehost/embed-text
      identifier: vectors
      config: {{column: chunk}}
    - name: Archive
      uses: satellite/exospherehost/move-file
      identifier: archive
      config: {{destination: archive}}
      input: {{paths: [outbox/a.txt, outbox/b.txt]}}
    - name: Clean up
      uses: satellite/exospherehost/delete-file
      identifier: cleanup
      input: {{paths: [trash/old.tmp]}}
"""

ORDERS = "id,customer,amount\n1,ann@example.org,10\n2,bob@example.org,25\n3,cy@example.org,40\n"


class Sink:
    """An HTTP receiver on 127.0.0.1 that answers 503 to the n-th request of a path (`fail[path] = {n, ...}`)
    and records every request: path, status answered, idempotency key, body."""

    def __init__(self):
        self.fail: dict[str, set[int]] = {}
        self.seen: list[tuple[str, int, str | None, bytes]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    nth = sum(1 for p, *_ in sink.seen if p == self.path) + 1
                    status = 503 if nth in sink.fail.get(self.path, ()) else 200
                    sink.seen.append((self.path, status, self.headers.get("Idempotency-Key"), body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def counts(self, path: str) -> tuple[int, int]:
        """(requests, accepted deliveries); an accepted key is never accepted twice (asserted)."""
        with self.lock:
            got = [s for s in self.seen if s[0] == path]
        keys = [key for _, status, key, _ in got if status == 200]
        assert len(keys) == len(set(keys)), f"{path}: a delivery was accepted twice: {Counter(keys)}"
        return len(got), len(keys)


class Mailbox:
    """aiosmtpd on 127.0.0.1 that answers the first message with a temporary 451 and keeps the rest."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.tries, self.kept = 0, []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.tries += 1
                if box.tries == 1:
                    return "451 4.3.0 try again later"
                box.kept.append(envelope.content)
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port(), ready_timeout=30)
        self.controller.start()
        self.port = self.controller.port

    def counts(self) -> tuple[int, int]:
        ids = [line for m in self.kept for line in m.decode().splitlines() if line.lower().startswith("message-id:")]
        assert len(ids) == len(set(ids)), f"a message was delivered twice: {Counter(ids)}"
        return self.tries, len(ids)


def _snapshot(folder: Path) -> dict[str, pl.DataFrame | bytes]:
    """Every stored step output: Parquet as a frame (compared by value), anything else as bytes."""
    return {
        p.name: pl.read_parquet(p) if p.suffix == ".parquet" else p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _execute(instance, path: Path, parent: str | None = None):
    job = dg.build_reconstructable_job("exo_dagster.cli", "cluster_job", reconstructable_args=(str(path),))
    options = dg.ReexecutionOptions(parent_run_id=parent) if parent else None
    with dg.execute_job(job, instance=instance, raise_on_error=False, reexecution_options=options) as result:
        retried = {
            e.step_key.split("__", 1)[0]
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        }
        return result.run_id, result.success, retried


# satellite: (same output on re-execution, effects in the first run (tries/done), effects added by the re-execution)
EXPECTED = {
    "get-files": ("same", "-", "-"),
    "read-table": ("same", "-", "-"),
    "sql": ("same", "-", "-"),
    "write-table upsert": ("same", "target: 3 rows", "target: same bytes"),
    "write-table append": ("rows 3 -> 6", "target: 3 rows", "target: +3 rows (by design)"),
    "call-webhook per-row": ("same", "4 requests / 3 accepted", "0"),
    "call-webhook per-batch": ("same", "2 requests / 1 accepted", "0"),
    "send-alert": ("same", "2 requests / 1 accepted", "0"),
    "forward-logs": ("same", "3 requests / 2 accepted", "0"),
    "send-email": ("same", "4 tries / 3 delivered", "0"),
    "llm-complete": ("same", "4 requests / 3 answered", "0"),
    "deepseek-r1-distrill-llama-70b": ("same", "3 requests / 3 answered", "0"),
    "parse-document": ("same", "-", "-"),
    "chunk-text": ("same", "-", "-"),
    "embed-text": ("same", "-", "-"),
    "move-file": ("status already-moved", "2 moved", "0"),
    "delete-file": ("status missing", "1 deleted", "0"),
}


@pytest.mark.slow
def test_every_satellite_retried_and_re_executed_has_its_effects_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    for folder, files in {
        "inbox": {"orders.csv": ORDERS},
        "docs": {"readme.md": "# Orders\n\nLoaded daily.\n", "notes.html": "<p>Re-runs are safe.</p>"},
        "outbox": {"a.txt": "a", "b.txt": "b"},
        "trash": {"old.tmp": "old"},
    }.items():
        (tmp_path / folder).mkdir()
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    sink, mailbox = Sink(), Mailbox()
    sink.fail = {"/hook": {1}, "/batch": {1}, "/alert": {1}, "/logs": {2}}  # a failure in the middle of each step
    llm = OpenAIServer().start()
    try:
        path = tmp_path / "idem.yaml"
        path.write_text(CLUSTER.format(http=sink.url, smtp=mailbox.port, llm=llm.url))
        outputs, data = tmp_path / "exo" / "outputs" / "t__idem", tmp_path / "exo"
        with dg.instance_for_test() as instance:
            first, ok, retried = _execute(instance, path)
            assert ok and retried == {"hook", "batchhook", "alert", "shiplogs", "mail"}, retried
            after_first = _snapshot(outputs)
            effects_first = _effects(sink, mailbox, llm, data, tmp_path)
            again, ok, retried = _execute(instance, path, parent=first)
            assert ok and retried == set()
            assert instance.get_run_by_id(again).root_run_id == first
            after_again = _snapshot(outputs)
            effects_again = _effects(sink, mailbox, llm, data, tmp_path)
    finally:
        sink.close()
        mailbox.controller.stop()
        llm.stop()

    registry = builtin_registry()
    shipped = [
        name
        for name in registry.ids()  # the built-ins: not satellites other test modules declared in-process
        if getattr(registry.get(name).fn, "__module__", "").startswith("satellites.")
    ]
    covered = {registry.get(name).id.rsplit("/", 1)[1] for name in shipped}  # an alias is its satellite
    assert covered == {name.split(" ")[0] for name in EXPECTED}, covered ^ {name.split(" ")[0] for name in EXPECTED}
    table = _table(after_first, after_again, effects_first, effects_again)
    print("\n" + "\n".join(f"| {name} | {' | '.join(row)} |" for name, row in table.items()))
    assert table == EXPECTED


def _effects(sink: Sink, mailbox: Mailbox, llm: OpenAIServer, data: Path, cluster_dir: Path) -> dict:
    stores = {name: pl.read_parquet(data / "idem" / f"{name}.parquet") for name in ("orders", "logbook")}
    return {
        "hook": sink.counts("/hook"),
        "batch": sink.counts("/batch"),
        "alert": sink.counts("/alert"),
        "logs": sink.counts("/logs"),
        "mail": mailbox.counts(),
        "labels": (
            sum(n for p, n in llm.requests.items() if "label order" in p),
            sum(n for p, n in llm.answered.items() if "label order" in p),
        ),
        "reason": (
            sum(n for p, n in llm.requests.items() if "[[think]]" in p),
            sum(n for p, n in llm.answered.items() if "[[think]]" in p),
        ),
        "store": (stores["orders"].height, hashlib.sha256((data / "idem" / "orders.parquet").read_bytes()).hexdigest()),
        "logbook": stores["logbook"].height,
        "archive": _files(data / "archive") if (data / "archive").exists() else [],
        "outbox": _files(cluster_dir / "outbox"),
        "trash": _files(cluster_dir / "trash"),
    }


def _table(first: dict, again: dict, one: dict, two: dict) -> dict[str, tuple[str, str, str]]:
    assert first.keys() == again.keys()

    def same(step: str) -> str:
        a, b = first[f"{step}.parquet"], again[f"{step}.parquet"]
        return "same" if a.equals(b) else "different"

    def effect(step: str, key: str, tries: str = "requests", done: str = "accepted") -> tuple[str, str, str]:
        """Same output?, `tries / done` in the first run, what the re-execution added (requests, or deliveries)."""
        (tried, did), (tried_again, did_again) = one[key], two[key]
        added = f"{tried_again - tried}" if did_again == did else f"{did_again - did} more {done}"
        return same(step), f"{tried} {tries} / {did} {done}", added

    moved, archived = first["archive.parquet"], again["archive.parquet"]
    deleted, redeleted = first["cleanup.parquet"], again["cleanup.parquet"]
    assert moved["status"].to_list() == ["moved", "moved"] and archived["status"].to_list() == ["already-moved"] * 2
    assert moved.drop("status").equals(archived.drop("status"))
    assert deleted["status"].to_list() == ["deleted"] and redeleted["status"].to_list() == ["missing"]
    assert one["archive"] == two["archive"] == ["a.txt", "b.txt"] and one["outbox"] == two["outbox"] == []
    assert one["trash"] == two["trash"] == []
    assert one["store"] == two["store"] and one["store"][0] == 3
    rows = first["logbook.parquet"]["rows"].to_list(), again["logbook.parquet"]["rows"].to_list()
    logbook = f"rows {rows[0][0]} -> {rows[1][0]}" if len(rows[0]) == len(rows[1]) == 1 else "different"
    return {
        "get-files": (same("files"), "-", "-"),
        "read-table": (same("orders"), "-", "-"),
        "sql": (same("totals"), "-", "-"),
        "write-table upsert": (
            same("store"),
            f"target: {one['store'][0]} rows",
            "target: same bytes" if one["store"] == two["store"] else "target: changed",
        ),
        "write-table append": (
            logbook,
            f"target: {one['logbook']} rows",
            f"target: +{two['logbook'] - one['logbook']} rows (by design)",
        ),
        "call-webhook per-row": effect("hook", "hook"),
        "call-webhook per-batch": effect("batchhook", "batch"),
        "send-alert": effect("alert", "alert"),
        "forward-logs": effect("shiplogs", "logs"),
        "send-email": effect("mail", "mail", tries="tries", done="delivered"),
        "llm-complete": effect("labels", "labels", done="answered"),
        "deepseek-r1-distrill-llama-70b": effect("reason", "reason", done="answered"),
        "parse-document": (same("docs"), "-", "-"),
        "chunk-text": (same("chunks"), "-", "-"),
        "embed-text": (same("vectors"), "-", "-"),
        "move-file": (
            "status already-moved",
            f"{len(one['archive'])} moved",
            f"{len(two['archive']) - len(one['archive'])}",
        ),
        "delete-file": ("status missing", "1 deleted", "0"),
    }


def test_a_row_served_from_the_cache_makes_the_same_columns_in_the_same_order(tmp_path):
    """A re-run's output equals the first run's: cached results keep the satellite's column order."""
    from tests.loopback import step_context

    def fn(row: dict, key: str) -> dict:
        return {"to": row["id"] * 2, "message_id": f"<{key}>", "b": True}

    rows = pl.DataFrame({"id": [1, 2, 3]})
    fresh = step_context(tmp_path).map_rows(fn, rows)
    cached_ctx = step_context(tmp_path)
    cached = cached_ctx.map_rows(fn, rows)
    assert fresh.columns == ["_row_key", "to", "message_id", "b", "_error"]
    assert cached_ctx.metadata["exo/rows_cached"] == 3
    assert cached.equals(fresh)


def test_a_batch_is_delivered_once_per_run_or_partition(tmp_path):
    """Per batch: a retry or re-execution (same root run) and a re-run of the same partition send nothing; a new
    unpartitioned run, or another partition, sends."""
    from satellites.notify.call_webhook import CallWebhookConfig, call_webhook
    from tests.loopback import http_server, step_context

    with http_server() as server:
        config = CallWebhookConfig(url=f"{server.url}/batch", body={"ping": 1})

        def run(run_id: str, root: str | None = None, partition: str | None = None) -> int:
            identity = {**config.model_dump(mode="json"), **({"exo/partition": partition} if partition else {})}
            ctx = step_context(tmp_path, config=identity, satellite_id="satellite/exospherehost/call-webhook")
            ctx.run_id, ctx.root_run_id = run_id, root
            call_webhook(ctx, config)
            return len(server.to("/batch"))

        assert [run("a"), run("a"), run("b", root="a"), run("c")] == [1, 1, 1, 2]  # retry, re-execution, new run
        assert [
            run("d", partition="2024-01-01"),
            run("e", partition="2024-01-01"),
            run("f", partition="2024-01-02"),
        ] == [3, 3, 4]
