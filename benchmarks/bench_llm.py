"""llm-complete benchmark against the loopback OpenAI-compatible test server (its own process).

(a) throughput  10,000 rows, 50 ms server latency, concurrency 64: rows/s of the whole step
                (`llm_complete(ctx, config)` with the row cache on, as a compiled step calls it),
                against the ideal 64 / 0.05 s = 1,280 rows/s. Targets: >= 85% of ideal, and the paired
                ratio step / bare aiohttp (same round) >= 0.95, printed per round with its median.
                Floor, measured in the same rounds: bare aiohttp, 64 workers, the same 10,000 POSTs
                (what this machine's client + server can do with no satellite at all); `--httpx`
                adds bare httpx 0.28 (why the client is aiohttp).
(b) 429s        10% of requests answered 429 (Retry-After: 1): every row completes exactly once
                (the server counts 200 answers per distinct prompt) and no row ends in `_error`.
(c) crash       `exo run` of a 10,000-row cluster is SIGKILLed halfway, then run again: the server
                receives no second request for any row that was in the row cache at the crash.

  .venv/bin/python -m benchmarks.bench_llm                 # all three
  .venv/bin/python -m benchmarks.bench_llm --only a --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl

from exo_dagster import StepContext
from satellites.ai.llm_complete import LlmCompleteConfig, llm_complete

from .harness import print_header

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "satellites" / "openai_server.py"
ROWS, CONCURRENCY, LATENCY = 10_000, 64, 0.05
IDEAL = CONCURRENCY / LATENCY
BARE_TARGET = 0.95  # the step against bare aiohttp in the same round (issue 15)


class Server:
    """tests/satellites/openai_server.py in a child process (so it does not share our GIL)."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, str(SERVER), *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            raise RuntimeError(f"test server did not start: {line!r}")
        self.url = line.split()[1]
        self.root = self.url.rsplit("/v1", 1)[0]

    def stats(self) -> dict:
        with urllib.request.urlopen(self.root + "/_stats", timeout=30) as r:
            return json.load(r)

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(self.root + "/_reset", method="POST", data=b""), timeout=30
        ).read()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def step(url: str, prompts: list[str], cache_path: str) -> tuple[float, pl.DataFrame, dict]:
    ctx = StepContext(
        cluster="bench/llm",
        step="answers",
        run_id="bench",
        input={},
        rows=pl.DataFrame({"prompt": prompts}).lazy(),
        tables={},
        previous=None,
        secrets={},
        identity=("satellite/exospherehost/llm-complete", "1.0.0", {}),
        cache_path=cache_path,
        concurrency=CONCURRENCY,
    )
    config = LlmCompleteConfig(model="gpt-4o-mini", base_url=url, concurrency=CONCURRENCY)
    started = time.perf_counter()
    out = llm_complete(ctx, config)
    return time.perf_counter() - started, out, ctx.metadata


def bare_client(url: str, prompts: list[str], client: str = "aiohttp") -> float:
    """The same POSTs with no satellite: 64 workers on one aiohttp session (or one httpx client)."""
    body = lambda p: {"model": "m", "messages": [{"role": "user", "content": p}]}  # noqa: E731

    async def main() -> None:
        queue = list(reversed(prompts))
        if client == "httpx":
            import httpx

            limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
            async with httpx.AsyncClient(timeout=60, limits=limits) as session:

                async def worker() -> None:
                    while queue:
                        (await session.post(url + "/chat/completions", json=body(queue.pop()))).json()

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return
        import aiohttp

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

            async def worker() -> None:
                while queue:
                    async with session.post(url + "/chat/completions", json=body(queue.pop())) as r:
                        await r.json()

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    started = time.perf_counter()
    asyncio.run(main())
    return time.perf_counter() - started


def bench_throughput(repeats: int, tmp: str, with_httpx: bool = False) -> bool:
    print(
        f"\n(a) throughput: {ROWS:,} rows, {LATENCY * 1000:.0f} ms/request, concurrency {CONCURRENCY}; "
        f"ideal {IDEAL:,.0f} rows/s, target >= {0.85 * IDEAL:,.0f} rows/s"
    )
    step_rates, floor_rates, ratios = [], [], []
    with Server("--latency", str(LATENCY)) as server:
        step(server.url, [f"warm {i}" for i in range(500)], os.path.join(tmp, "warm.sqlite"))
        for r in range(repeats):
            order = ("step", "floor") if r % 2 == 0 else ("floor", "step")
            for what in order:
                prompts = [f"{what} {r} row {i}" for i in range(ROWS)]
                gc.collect()  # garbage of the previous round is not billed to this one
                if what == "step":
                    seconds, out, meta = step(server.url, prompts, os.path.join(tmp, f"a{r}.sqlite"))
                    assert out.height == ROWS and out["_error"].null_count() == ROWS, meta.get("exo/row_errors")
                    assert meta["exo/llm/requests"] == ROWS
                    step_rates.append(ROWS / seconds)
                else:
                    floor_rates.append(ROWS / bare_client(server.url, prompts))
            ratios.append(step_rates[-1] / floor_rates[-1])
            print(
                f"   round {r + 1}: step {step_rates[-1]:,.0f} rows/s ({step_rates[-1] / IDEAL:.1%} of ideal), "
                f"bare aiohttp {floor_rates[-1]:,.0f} req/s, step/bare {ratios[-1]:.3f}  (load {_load()})"
            )
        if with_httpx:
            rate = 3000 / bare_client(server.url, [f"httpx row {i}" for i in range(3000)], client="httpx")
            print(f"   bare httpx 0.28 (3,000 requests, one AsyncClient, 64 workers): {rate:,.0f} req/s")
        counts = server.stats()["requests"]
        assert all(n == 1 for n in counts.values()), "a prompt was requested twice"
    median, floor = statistics.median(step_rates), statistics.median(floor_rates)
    ratio = statistics.median(ratios)
    ok = median >= 0.85 * IDEAL and ratio >= BARE_TARGET
    print(
        f"   median: step {median:,.0f} rows/s = {median / IDEAL:.1%} of ideal (min {min(step_rates):,.0f}, "
        f"max {max(step_rates):,.0f}); bare aiohttp {floor:,.0f} req/s (min {min(floor_rates):,.0f}, "
        f"max {max(floor_rates):,.0f})"
    )
    print(
        f"   step/bare per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {ratio:.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target >= {BARE_TARGET}  [{'PASS' if ok else 'FAIL'}]"
    )
    return ok


def bench_429(tmp: str) -> bool:
    print(f"\n(b) {ROWS:,} rows with 10% of requests answered 429 (Retry-After: 1), concurrency {CONCURRENCY}")
    with Server("--latency", str(LATENCY), "--rate-429", "0.1", "--retry-after", "1", "--seed", "7") as server:
        prompts = [f"limited row {i}" for i in range(ROWS)]
        seconds, out, meta = step(server.url, prompts, os.path.join(tmp, "b.sqlite"))
        stats = server.stats()
    answered, requests = stats["answered"], stats["requests"]
    exactly_once = len(answered) == ROWS and all(n == 1 for n in answered.values())
    no_errors = out["_error"].null_count() == ROWS and out.height == ROWS
    limited = meta["exo/llm/rate_limited"]
    print(
        f"   {stats['total']:,} requests, {limited:,} answered 429 ({limited / stats['total']:.1%}), "
        f"{sum(requests.values()) - ROWS:,} retries; {ROWS / seconds:,.0f} rows/s"
    )
    print(
        f"   prompts answered: {len(answered):,}; answered exactly once: "
        f"{sum(1 for n in answered.values() if n == 1):,}; "
        f"rows with _error: {ROWS - out['_error'].null_count()}  [{'PASS' if exactly_once and no_errors else 'FAIL'}]"
    )
    return exactly_once and no_errors


CRASH_CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: bench/llm-crash
  satellites:
    - name: Prompts
      uses: satellite/exospherehost/sql
      identifier: prompts
      config: {{query: "select 'crash row ' || i as text from range({rows}) t(i)"}}
    - name: Complete
      uses: satellite/exospherehost/llm-complete
      identifier: answers
      config: {{model: gpt-4o-mini, base-url: "{url}", concurrency: {concurrency}}}
      input: {{prompt: "$${{{{ satellites.prompts.output.text }}}}"}}
"""


def bench_crash(tmp: str) -> bool:
    print(
        f"\n(c) crash: `exo run` of a {ROWS:,}-row llm-complete step, SIGKILL at ~{ROWS // 2:,} requests, then run "
        "again"
    )
    home = Path(tmp) / "crash"
    (home / "home").mkdir(parents=True)
    env = {**os.environ, "DAGSTER_HOME": str(home / "home"), "EXO_DATA_DIR": str(home / "exo")}
    env.pop("EXO_CACHE_DIR", None)
    exo = str(Path(sys.executable).parent / "exo")
    with Server("--latency", str(LATENCY)) as server:
        cluster = home / "crash.yaml"
        cluster.write_text(CRASH_CLUSTER.format(rows=ROWS, url=server.url, concurrency=CONCURRENCY))
        child = subprocess.Popen(
            [exo, "run", str(cluster)],
            env=env,
            cwd=REPO,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while server.stats()["total"] < ROWS // 2:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the first run ended (exit {child.returncode}) before the crash point")
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        before = server.stats()
        cache = home / "exo" / "cache" / "bench__llm_crash.sqlite"
        with sqlite3.connect(cache) as con:
            # committed rows: merged (`rows`) or appended since the last merge (`pending`), see sdk/row_cache.py
            results = [
                json.loads(r)
                for (r,) in con.execute(
                    "select result from rows where step = 'answers' union all select result from pending where step "
                    "= 'answers'"
                )
            ]
        finished = {r["text"].removeprefix("echo: ") for r in results}
        started = time.perf_counter()
        rerun = subprocess.run(
            [exo, "run", str(cluster)], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        seconds = time.perf_counter() - started
        after = server.stats()
    out = pl.read_parquet(home / "exo" / "outputs" / "bench__llm_crash" / "answers.parquet")
    twice = [p for p in finished if after["requests"].get(p, 0) != 1]
    re_asked = {p for p, n in after["requests"].items() if n > 1}
    ok = (
        rerun.returncode == 0
        and not twice
        and out.height == ROWS
        and out["_error"].null_count() == ROWS
        and len(after["requests"]) == ROWS
    )
    print(f"   at the kill: {before['total']:,} requests received, {len(finished):,} rows finished (in the row cache)")
    print(
        f"   re-run ({seconds:.1f} s, exit {rerun.returncode}): {after['total'] - before['total']:,} new requests; "
        f"rows requested a second time: {len(re_asked)} (in flight at the kill, or answered in the last group "
        f"commit window, <= ~100 ms, and so not yet in the cache); "
        f"finished rows requested again: {len(twice)}; output rows {out.height:,}, errors "
        f"{ROWS - out['_error'].null_count()}  [{'PASS' if ok else 'FAIL'}]"
    )
    if rerun.returncode:
        print(rerun.stdout[-2000:], rerun.stderr[-2000:])
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("a", "b", "c"), action="append")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--httpx", action="store_true", help="also measure bare httpx 0.28 in (a)")
    args = parser.parse_args()
    parts = args.only or ["a", "b", "c"]
    print_header("llm-complete: throughput, 429s, crash + re-run")
    results = {}
    with tempfile.TemporaryDirectory(prefix="exo-bench-llm-") as tmp:
        if "a" in parts:
            results["throughput"] = bench_throughput(args.repeats, tmp, args.httpx)
        if "b" in parts:
            results["429"] = bench_429(tmp)
        if "c" in parts:
            results["crash"] = bench_crash(tmp)
    print("\nsummary: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in results.items()))
    sys.exit(0 if all(results.values()) else 1)


if __name__ == "__main__":
    main()
