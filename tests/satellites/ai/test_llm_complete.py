"""llm-complete against a real OpenAI-compatible server on 127.0.0.1: answers, retries, re-asks,
rate limits, the row cache, batch files, secrets, and a compiled cluster end to end."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from pydantic import ValidationError

from exo_dagster import StepContext, compile_cluster, parse_cluster
from exo_dagster.sdk import step_errors
from exo_dagster.sdk.step_errors import PermanentError
from satellites.ai.llm_client import TokenBucket, retry_after_seconds
from satellites.ai.llm_complete import DeepSeekR1Config, LlmCompleteConfig, deepseek_r1, llm_complete
from satellites.ai.llm_output import InvalidOutput, extract_json, strip_reasoning, to_json_schema
from tests.satellites.openai_server import OpenAIServer

KEY = "sk-test-SECRET-9f8e7d6c"
LLM_ID = ("satellite/exospherehost/llm-complete", "1.0.0", {})


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def run(tmp_path):
    """Call the satellite like a compiled step does: a StepContext over per-row input, a row cache file."""

    def call(
        rows: pl.DataFrame | None,
        *,
        fn=llm_complete,
        config_class=LlmCompleteConfig,
        secrets=None,
        input=None,
        cache: bool = True,
        log=None,
        **config,
    ) -> tuple[pl.DataFrame, dict]:
        ctx = StepContext(
            cluster="t/llm",
            step="labels",
            run_id="r",
            input=input or {},
            rows=rows.lazy() if rows is not None else None,
            tables={},
            previous=None,
            secrets=secrets or {},
            base_dir=str(tmp_path),
            data_dir=str(tmp_path / "data"),
            identity=LLM_ID,
            cache_path=str(tmp_path / "cache.sqlite") if cache else None,
            **({"log": log} if log else {}),
        )
        cfg = config_class.model_validate({"backoff": 0.01, **config})
        return fn(ctx, cfg), ctx.metadata

    return call


def prompts(*texts: str) -> pl.DataFrame:
    return pl.DataFrame({"prompt": list(texts)})


def test_text_completion_per_row_in_order_with_usage_and_passthrough(server, run):
    rows = pl.DataFrame({"prompt": [f"ticket number {i}" for i in range(40)], "ticket_id": list(range(40))})
    out, meta = run(rows, model="gpt-4o-mini", base_url=server.url, concurrency=8)
    assert out.columns == [
        "prompt",
        "ticket_id",
        "text",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "_error",
        "_row_key",
    ]
    assert out["text"].to_list() == [f"echo: ticket number {i}" for i in range(40)]
    assert out["ticket_id"].to_list() == list(range(40)) and out["_error"].null_count() == 40
    assert set(out["model"]) == {"gpt-4o-mini"} and out["prompt_tokens"].to_list()[0] == 3
    assert out["total_tokens"].to_list()[0] == 3 + 4
    assert all(n == 1 for n in server.requests.values()) and len(server.requests) == 40
    assert meta["exo/llm/requests"] == 40 and meta["exo/llm/total_tokens"] == 40 * 7
    assert meta["exo/llm/estimated_cost_usd"] == pytest.approx((40 * 3 * 0.15 + 40 * 4 * 0.60) / 1e6, abs=1e-6)
    assert meta["exo/llm/rows_failed"] == 0 and meta["exo/rows_computed"] == 40
    sent = server.bodies["ticket number 0"][0]
    assert sent["model"] == "gpt-4o-mini" and sent["messages"] == [{"role": "user", "content": "ticket number 0"}]
    assert "temperature" not in sent and "response_format" not in sent
    first = next(
        h for h, b in zip(server.headers, server.all_bodies) if b["messages"][0]["content"] == "ticket number 0"
    )
    assert first["idempotency-key"] == out["_row_key"][0]


def test_json_output_loose_schema_gives_typed_columns(server, run):
    schema = {
        "label": ["bug", "billing", "question"],
        "urgent": "boolean",
        "score": "number",
        "words": "integer",
        "tags": ["string"],
        "details": {"area": "string"},
    }
    out, meta = run(
        prompts("app crashes", "refund me please"),
        model="gpt-4o-mini",
        base_url=server.url,
        output_schema=schema,
        system="You triage tickets.",
    )
    assert out.schema["label"] == pl.Utf8 and out.schema["urgent"] == pl.Boolean
    assert out.schema["score"] == pl.Float64 and out.schema["words"] == pl.Int64
    assert out.schema["tags"] == pl.List(pl.Utf8) and out.schema["details"] == pl.Utf8
    first = out.row(0, named=True)
    assert first["label"] in ("bug", "billing", "question") and first["words"] == len("app crashes")
    assert first["tags"] == ["app", "crashes"] and json.loads(first["details"]) == {"area": "re: app crashes"}
    body = server.bodies["app crashes"][0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == list(schema)
    assert body["messages"][0]["role"] == "system" and body["messages"][0]["content"].startswith("You triage tickets.")
    assert "JSON Schema" in body["messages"][0]["content"]


def test_json_without_fields_keeps_the_object_and_json_schema_form_is_accepted(server, run):
    out, _ = run(prompts("hello"), model="m", base_url=server.url, output_format="json")
    assert json.loads(out["json"][0]) == {"echo": "hello", "length": 5}
    assert server.bodies["hello"][0]["response_format"] == {"type": "json_object"}
    js = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    out, _ = run(prompts("hey"), model="m", base_url=server.url, output_schema=js, response_format="none")
    assert out["n"].to_list() == [3] and "response_format" not in server.bodies["hey"][0]


def test_config_accepts_the_seed_and_rejects_bad_schemas():
    seed = LlmCompleteConfig.model_validate(
        {"model": "gpt-4o-mini", "output-format": "json", "output-schema": {"...": None}}
    )
    assert seed.json_schema() == {"type": "object"}
    assert LlmCompleteConfig.model_validate({"model": "m", "output-schema": {"a": "int"}}).output_format == "json"
    assert to_json_schema({"a": "int", "b": ["x", "y"], "c": [{"d": "bool"}]}) == {
        "type": "object",
        "required": ["a", "b", "c"],
        "properties": {
            "a": {"type": "integer"},
            "b": {"enum": ["x", "y"]},
            "c": {
                "type": "array",
                "items": {"type": "object", "properties": {"d": {"type": "boolean"}}, "required": ["d"]},
            },
        },
    }
    with pytest.raises(ValidationError, match="unknown type `strnig`"):
        LlmCompleteConfig.model_validate({"model": "m", "output-schema": {"label": "strnig"}})
    with pytest.raises(ValidationError, match="not valid JSON Schema"):
        LlmCompleteConfig.model_validate({"model": "m", "output-schema": {"type": "object", "properties": 3}})
    with pytest.raises(ValidationError, match="needs output-format: json"):
        LlmCompleteConfig.model_validate({"model": "m", "output-format": "text", "output-schema": {"a": "int"}})
    with pytest.raises(ValidationError, match="extra"):
        LlmCompleteConfig.model_validate({"model": "m", "temprature": 0})


@pytest.mark.slow
def test_429_waits_for_retry_after_and_5xx_backs_off_exponentially(run):
    with OpenAIServer(retry_after="1") as server:
        out, meta = run(
            prompts("[[429:1]] a", "[[500:2]] b", "[[503:1]] c"), model="m", base_url=server.url, backoff=0.2
        )
    assert out["_error"].null_count() == 3 and out["text"].to_list()[0] == "echo: [[429:1]] a"
    assert server.requests == {"[[429:1]] a": 2, "[[500:2]] b": 3, "[[503:1]] c": 2}
    assert all(n == 1 for n in server.answered.values())
    t = server.times["[[429:1]] a"]
    assert t[1] - t[0] >= 1.0  # Retry-After: 1 honoured
    t = server.times["[[500:2]] b"]
    assert 0.1 <= t[1] - t[0] and 0.2 <= t[2] - t[1]  # 0.2 s * 2**attempt, jittered into [50%, 100%]
    assert (meta["exo/llm/rate_limited"], meta["exo/llm/server_errors"], meta["exo/llm/retries"]) == (1, 3, 4)


def test_retry_after_ms_wins_and_gives_up_after_max_retries(run):
    with OpenAIServer(retry_after="30", retry_after_ms="150") as server:
        out, meta = run(prompts("[[429:1]] a", "[[500:9]] never"), model="m", base_url=server.url, max_retries=2)
    t = server.times["[[429:1]] a"]
    assert 0.15 <= t[1] - t[0] < 5  # the millisecond header, not the 30 s one
    assert server.requests["[[500:9]] never"] == 3
    assert out["_error"][1].startswith("LlmError: gave up after 3 attempts; last: HTTP 500")
    assert out.row(1, named=True)["text"] is None and meta["exo/llm/rows_failed"] == 1


def test_timeouts_and_unreadable_bodies_are_retried(server, run):
    started = time.monotonic()
    out, meta = run(prompts("[[hang:1:6]] slow", "[[badbody:1]] garbled"), model="m", base_url=server.url, timeout=0.5)
    assert out["_error"].null_count() == 2 and time.monotonic() - started < 5  # did not wait out the 6 s hang
    assert server.requests == {"[[hang:1:6]] slow": 2, "[[badbody:1]] garbled": 2}
    assert meta["exo/llm/timeouts"] == 1


def test_invalid_json_is_reasked_then_recorded_in_error(server, run):
    out, meta = run(
        prompts("[[malformed:1]] once", "[[badschema:2]] twice", "[[malformed:9]] always"),
        model="m",
        base_url=server.url,
        output_schema={"label": ["bug", "billing"]},
        max_reasks=2,
    )
    assert out["_error"][:2].null_count() == 2 and set(out["label"][:2]) <= {"bug", "billing"}
    assert server.requests == {"[[malformed:1]] once": 2, "[[badschema:2]] twice": 3, "[[malformed:9]] always": 3}
    assert out["_error"][2].startswith("InvalidOutput: the reply is not JSON") and "asked 3 time(s)" in out["_error"][2]
    reask = server.bodies["[[malformed:1]] once"][1]["messages"]
    assert reask[-2]["role"] == "assistant" and reask[-1]["role"] == "user" and "rejected" in reask[-1]["content"]
    assert meta["exo/llm/reasks"] == 1 + 2 + 2 and meta["exo/llm/rows_failed"] == 1
    # tokens of every attempt are counted in the row and in the totals
    assert out["prompt_tokens"][0] > server.bodies["[[malformed:1]] once"][0]["messages"][0]["content"].count(" ")


def test_client_errors_are_not_retried_and_bad_keys_stop_the_step(run):
    with OpenAIServer() as server:
        out, _ = run(prompts("[[status:400]] too long", "fine"), model="m", base_url=server.url)
    assert server.requests["[[status:400]] too long"] == 1 and out["_error"][0].startswith("LlmError: HTTP 400")
    assert out["text"][1] == "echo: fine"
    with OpenAIServer(api_key=KEY) as server:
        with pytest.raises(PermanentError) as failure:
            run(
                prompts(*[f"p{i}" for i in range(30)]),
                model="m",
                base_url=server.url,
                secrets={"API_KEY": "sk-wrong-key"},
                concurrency=2,
            )
    assert "HTTP 401" in str(failure.value) and "Incorrect API key" in str(failure.value)
    assert step_errors.kind(failure.value) == step_errors.PERMANENT  # the step fails at once, never retried
    assert server.total <= 3  # the first 401 stops the calls; only what was already in flight went out
    assert "sk-wrong-key" not in str(failure.value)


def test_api_key_is_sent_and_never_shown(tmp_path, run):
    logger = logging.getLogger("exo_dagster.test_llm")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with OpenAIServer(api_key=KEY) as server:
            out, meta = run(
                prompts("hi", "[[echoauth]] show me"),
                model="m",
                base_url=server.url,
                secrets={"API_KEY": KEY},
                log=logger,
            )
    finally:
        logger.removeHandler(handler)
    assert {h["authorization"] for h in server.headers} == {f"Bearer {KEY}"}
    assert out["text"][0] == "echo: hi" and "********" in out["_error"][1]
    shown = json.dumps(out.to_dicts()) + json.dumps(meta, default=str) + "\n".join(records)
    assert records and KEY not in shown


def test_openai_without_a_key_is_a_clear_error(run, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PermanentError, match=r"no key: map one"):
        run(prompts("x"), model="gpt-4o-mini")
    with pytest.raises(PermanentError, match="needs `input.prompt` or `input.messages`"):
        run(pl.DataFrame({"text": ["x"]}), model="m", base_url="http://127.0.0.1:9/v1")


def test_a_rerun_never_pays_twice(server, run):
    rows = prompts(*[f"row {i}" for i in range(30)], "[[500:99]] flaky")
    out, meta = run(rows, model="m", base_url=server.url, max_retries=0)
    assert out["_error"].null_count() == 30 and server.total == 31
    # faster settings are the same work: still cached
    out2, meta2 = run(
        rows, model="m", base_url=server.url, max_retries=0, concurrency=3, timeout=5, requests_per_minute=10000
    )
    assert server.total == 32 and server.requests["[[500:99]] flaky"] == 2  # only the failed row went out again
    assert meta2["exo/rows_cached"] == 30 and meta2["exo/llm/requests"] == 1
    assert out2["text"].to_list()[:30] == out["text"].to_list()[:30]
    assert "exo/llm/estimated_cost_usd" not in meta2 and "no price known" in meta2["exo/llm/cost_note"]
    # a different model is different work
    run(rows.head(2), model="m2", base_url=server.url)
    assert server.requests["row 0"] == 2


@pytest.mark.slow
def test_requests_and_tokens_per_minute_pace_the_calls(server, run):
    # the server thread records arrivals on this process's monotonic clock: compare with the start
    start = time.monotonic()
    run(
        prompts(*[f"r{i}" for i in range(60)]), model="m", base_url=server.url, requests_per_minute=1200, concurrency=16
    )
    times = sorted(t for ts in server.times.values() for t in ts)
    # 20/s after a burst of one second's worth: the k-th request cannot go out before (k - 20) / 20 s
    assert all(t - start >= (k + 1 - 20) / 20 - 0.01 for k, t in enumerate(times))
    assert times[-1] - start >= 2.0 - 0.01
    server.reset()
    # each request reserves prompt/4 + max-tokens (100) = 101 tokens, kept (max-tokens set: no refund);
    # 1000 tokens/s with a burst of 1000: 20 requests need (2020 - 1000) / 1000 s
    start = time.monotonic()
    run(
        prompts(*[f"t{i}" for i in range(20)]),
        model="m",
        base_url=server.url,
        tokens_per_minute=60000,
        max_tokens=100,
        concurrency=16,
    )
    times = sorted(t for ts in server.times.values() for t in ts)
    assert times[-1] - start >= 1.0


def test_token_bucket_and_retry_after_parsing():
    bucket = TokenBucket(per_minute=60)  # 1/s, burst 1
    assert bucket.reserve(1) == 0.0 and 0.9 < bucket.reserve(1) <= 1.0 and 1.9 < bucket.reserve(1) <= 2.0
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))
    assert 3.5 < retry_after_seconds({"retry-after": date}) <= 5.0
    assert retry_after_seconds({}) is None and retry_after_seconds({"retry-after": "soon"}) is None


def test_reply_parsing_rules():
    assert strip_reasoning('<think>hmm {x}</think>\n{"a": 1}') == '{"a": 1}'
    assert strip_reasoning("still thinking</think>answer") == "answer"
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Sure! Here it is: {"a": [1, 2]} Hope that helps.') == {"a": [1, 2]}
    with pytest.raises(InvalidOutput, match="one JSON object"):
        extract_json("[1, 2]")


def test_messages_input_and_whole_column_prompts(server, run):
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first question"}]
    rows = pl.DataFrame({"messages": [json.dumps(chat)]})
    out, _ = run(rows, model="m", base_url=server.url)
    assert out["text"][0] == "echo: first question"
    assert server.bodies["first question"][0]["messages"] == chat
    out, _ = run(None, model="m", base_url=server.url, input={"prompt": ["a", "b", "c"]})
    assert out["text"].to_list() == ["echo: a", "echo: b", "echo: c"]
    out, _ = run(prompts("x", None), model="m", base_url=server.url)
    assert out["text"][0] == "echo: x" and "has no prompt" in out["_error"][1]


def test_deepseek_alias_strips_reasoning_and_needs_an_endpoint(server, run, monkeypatch):
    monkeypatch.delenv("EXO_DEEPSEEK_BASE_URL", raising=False)
    monkeypatch.delenv("EXO_DEEPSEEK_MODEL", raising=False)
    with pytest.raises(PermanentError, match="EXO_DEEPSEEK_BASE_URL"):
        run(prompts("x"), fn=deepseek_r1, config_class=DeepSeekR1Config)
    monkeypatch.setenv("EXO_DEEPSEEK_BASE_URL", server.url)
    out, _ = run(
        prompts("[[think]] classify"),
        fn=deepseek_r1,
        config_class=DeepSeekR1Config,
        output_schema={"label": ["bug", "other"]},
    )
    assert out["_error"][0] is None and out["label"][0] in ("bug", "other")
    assert out["model"][0] == "deepseek-r1-distill-llama-70b"
    out, _ = run(prompts("[[think]] plain"), fn=deepseek_r1, config_class=DeepSeekR1Config)
    assert out["text"][0] == "echo: [[think]] plain"


def test_batch_mode_writes_openai_batch_jsonl_and_reads_results_back(tmp_path, run):
    rows = pl.DataFrame({"prompt": ["a", "b", "c"], "id": [1, 2, 3]})
    cfg = {
        "model": "gpt-4o-mini",
        "base_url": "http://127.0.0.1:9/v1",
        "output_schema": {"label": ["x", "y"]},
        "mode": "batch",
    }
    out, meta = run(rows, **cfg)
    path = Path(meta["exo/llm/batch_file"])
    assert path == tmp_path / "data" / "batches" / "labels.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == out["_row_key"].to_list()
    assert {(line["method"], line["url"]) for line in lines} == {("POST", "/v1/chat/completions")}
    assert lines[0]["body"]["model"] == "gpt-4o-mini" and lines[0]["body"]["messages"][-1] == {
        "role": "user",
        "content": "a",
    }
    results = tmp_path / "results.jsonl"
    answers = {"a": '{"label": "x"}', "b": "not json"}
    with results.open("w") as fh:
        for line, prompt in zip(lines, "abc"):
            if prompt in answers:
                body = {
                    "model": "gpt-4o-mini-2024",
                    "choices": [{"message": {"content": answers[prompt]}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
                }
                fh.write(
                    json.dumps(
                        {"custom_id": line["custom_id"], "response": {"status_code": 200, "body": body}, "error": None}
                    )
                    + "\n"
                )
    back, meta = run(rows, **cfg, batch_results=str(results))
    assert back["label"].to_list() == ["x", None, None] and back["id"].to_list() == [1, 2, 3]
    assert back["model"][0] == "gpt-4o-mini-2024" and "the reply is not JSON" in back["_error"][1]
    assert "not in the batch results" in back["_error"][2]
    assert meta["exo/llm/prompt_tokens"] == 20 and meta["exo/llm/rows_failed"] == 2
    # the answered row went into the row cache: a new batch file leaves it out
    out, meta = run(rows, **cfg)
    assert meta["exo/llm/batch_requests"] == 2 and out["batched"].to_list() == [False, True, True]


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: test/triage
  secrets:
    - OPENAI_API_KEY: ${{{{ env.EXO_TEST_LLM_KEY }}}}
  satellites:
    - name: Tickets
      uses: satellite/exospherehost/sql
      identifier: tickets
      config: {{query: "select * from (values (1, 'app crashes'), (2, 'refund please'), (3, 'hello')) t(id, text)"}}
    - name: Classify
      uses: satellite/exospherehost/llm-complete
      identifier: labels
      config:
        model: gpt-4o-mini
        base-url: {url}
        output-format: json
        output-schema: {{label: [bug, billing, other], urgent: boolean}}
        concurrency: 4
        secrets:
          - API_KEY: ${{{{ secrets.OPENAI_API_KEY }}}}
      input:
        prompt: "Label this ticket: $${{{{ satellites.tickets.output.text }}}}"
        id: $${{{{ satellites.tickets.output.id }}}}
"""


def test_compiled_cluster_templates_rows_keeps_the_key_secret_and_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    monkeypatch.setenv("EXO_TEST_LLM_KEY", KEY)
    with OpenAIServer(api_key=KEY) as server:
        cluster = parse_cluster(CLUSTER.format(url=server.url), str(tmp_path / "triage.yaml"))
        job = compile_cluster(cluster).resolve_job_def(cluster.job_name)
        instance = dg.DagsterInstance.ephemeral()
        result = job.execute_in_process(instance=instance)
        assert result.success
        assert set(server.requests) == {
            "Label this ticket: app crashes",
            "Label this ticket: refund please",
            "Label this ticket: hello",
        }
        labels = pl.read_parquet(tmp_path / "exo" / "outputs" / "test__triage" / "labels.parquet")
        assert labels["id"].to_list() == [1, 2, 3] and labels["_error"].null_count() == 3
        assert set(labels["label"]) <= {"bug", "billing", "other"} and labels.schema["urgent"] == pl.Boolean
        again = job.execute_in_process(instance=instance)
        assert again.success and server.total == 3  # every row came from the row cache
    materializations = [e.materialization for e in again.get_asset_materialization_events()]
    meta = next(m.metadata for m in materializations if m.asset_key.path[-1] == "labels")
    assert meta["exo/rows_cached"].value == 3 and meta["exo/llm/requests"].value == 0
    logs = "\n".join(str(e) for e in instance.all_logs(result.run_id) + instance.all_logs(again.run_id))
    assert KEY not in logs and KEY not in json.dumps(labels.to_dicts())
    assert KEY not in json.dumps(instance.get_run_by_id(result.run_id).run_config)


@pytest.mark.slow
def test_catalog_loads_without_importing_the_ai_stack():
    code = (
        "import sys, satellites; from exo_dagster.catalog.registry import builtin_registry; "
        "ids = builtin_registry().ids(); "
        "assert 'satellite/exospherehost/llm-complete' in ids and 'satellite/exospherehost/embed-text' in ids; "
        "assert 'satellite/exospherehost/deepseek-r1-distrill-llama-70b' in ids; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'jsonschema', 'satellites.ai.llm_client') if m in "
        "sys.modules]; "
        "print(heavy); assert not heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
