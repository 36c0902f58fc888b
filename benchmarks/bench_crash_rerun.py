"""A crash halfway through 100,000 per-row calls, then a re-run: how many finished rows are redone?

A compiled cluster (`sql` -> `call-webhook` per row, concurrency 32) runs through
`dagster job execute` against an HTTP server on loopback that records every request's
Idempotency-Key. When the server has seen half the rows, the whole run's process group is
killed with SIGKILL (no cleanup runs). The same command is then run again.

Reported: rows finished before the crash (committed in the row cache), requests the re-run
sent, how many of those were for finished rows (target: 0), and how many repeated a request
that was in flight at the moment of the kill (sent, but its answer never recorded: not finished).

    .venv/bin/python -m benchmarks.bench_crash_rerun [--rows 100000]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .harness import cluster_run, print_header

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/crash
  satellites:
    - name: Rows
      uses: satellite/exospherehost/sql
      identifier: ids
      config: {{query: "select i as id from range({rows}) t(i)"}}
    - name: Call
      uses: satellite/exospherehost/call-webhook
      identifier: calls
      concurrency: 32
      config: {{url: "http://127.0.0.1:{port}/hook"}}
      input: {{id: "$${{{{ satellites.ids.output.id }}}}"}}
"""


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    keys: list[str] = []
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.keys.append(self.headers.get("Idempotency-Key", ""))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print_header(f"crash halfway through {args.rows:,} per-row calls, then a re-run")
    ThreadingHTTPServer.request_queue_size = 512  # the default backlog of 5 refuses bursts of 32 connections
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # the killed run drops its connections mid-request
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="exo-crash-") as tmp:
        work = Path(tmp)
        cluster = work / "crash.yaml"
        cluster.write_text(CLUSTER.format(rows=args.rows, port=server.server_address[1]))
        cmd, env = cluster_run(work, cluster, "bench__crash")

        started = time.perf_counter()
        first = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        while len(Recorder.keys) < args.rows // 2:
            if first.poll() is not None:
                raise SystemExit("the first run ended before the crash point")
            time.sleep(0.005)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        crash_s = time.perf_counter() - started
        with Recorder.lock:
            sent_before = list(Recorder.keys)
            Recorder.keys.clear()
        with sqlite3.connect(work / "exo" / "cache" / "bench__crash.sqlite") as con:
            # committed rows: merged (`rows`) or appended since the last merge (`pending`), see sdk/row_cache.py
            finished = {
                k
                for (k,) in con.execute(
                    "select key from rows where step = 'calls' union select key from pending where step = 'calls'"
                )
            }

        started = time.perf_counter()
        second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        rerun_s = time.perf_counter() - started
        if second.returncode:
            raise SystemExit(second.stderr[-3000:])
        sent_after = list(Recorder.keys)
        import polars as pl

        calls = pl.read_parquet(work / "exo" / "outputs" / "bench__crash" / "calls.parquet")
        row_errors = calls["_error"].drop_nulls().to_list()
    server.shutdown()
    redone = [k for k in sent_after if k in finished]
    in_flight = set(sent_before) - finished
    print(
        f"   first run: killed after {crash_s:.1f} s; server had {len(sent_before):,} requests, "
        f"{len(finished):,} rows committed as finished ({len(in_flight)} sent but not finished: in flight)"
    )
    print(
        f"   re-run: {rerun_s:.1f} s, {len(sent_after):,} requests "
        f"(expected {args.rows - len(finished):,} = rows not finished), distinct keys {len(set(sent_after)):,}"
    )
    print(
        f"   finished rows requested again: {len(redone)} (target 0); "
        f"in-flight rows re-sent: {len(set(sent_after) & in_flight)} (with the same Idempotency-Key)"
    )
    all_keys = finished | set(sent_after)
    print(
        f"   every row done: {len(all_keys) == args.rows} ({len(all_keys):,} distinct keys); rows with `_error` after "
        f"the re-run: {len(row_errors)}" + (f" (first: {row_errors[0]})" if row_errors else "")
    )


if __name__ == "__main__":
    main()
