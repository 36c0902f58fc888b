"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

It answers over a real socket (asyncio, HTTP/1.1 keep-alive) and misbehaves on demand, so the
client's retries, backoff and re-asks are exercised for real:

- globally: `latency` seconds per answer, a fraction `rate_429` of requests answered 429
  (seeded, reproducible), an `api_key` it requires as `Authorization: Bearer ...`;
- per prompt, by directives written in the prompt text (the first user message), consumed in order
  by that prompt's 1st, 2nd, ... request:
  `[[429:N]]`, `[[500:N]]`, `[[503:N]]` the first N requests get that status (429 with Retry-After);
  `[[hang:N:S]]` the first N requests wait S seconds (default 5) before answering (client time-outs);
  `[[malformed:N]]` reply content that is not JSON; `[[badschema:N]]` JSON that misses the schema;
  `[[badbody:N]]` an HTTP 200 whose body is not JSON; `[[status:CODE]]` always that error status;
  `[[delay:S]]` every answer waits S seconds; `[[think]]` wraps the answer in <think>...</think>;
  `[[echoauth]]` a 400 whose message repeats the Authorization header (for masking tests).

It counts requests and 200 answers per distinct prompt, and keeps arrival times.
Run standalone (benchmarks): `python tests/satellites/openai_server.py --latency 0.05 --rate-429 0.1`
prints `LISTENING <url>`; `GET /_stats` returns the counts, `POST /_reset` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from typing import Any

DIRECTIVE = re.compile(r"\[\[(\w+)(?::([^\]:]*))?(?::([^\]]*))?\]\]")
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
COUNTED = ("429", "500", "503", "hang", "malformed", "badschema", "badbody")


class OpenAIServer:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        rate_429: float = 0.0,
        retry_after: str | None = "1",
        retry_after_ms: str | None = None,
        api_key: str | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ):
        self.latency, self.rate_429 = latency, rate_429
        self.retry_after, self.retry_after_ms = retry_after, retry_after_ms
        self.api_key, self.host, self.port = api_key, host, port
        self.record = record  # keep bodies, headers and arrival times (tests); counts are always kept
        self._random = random.Random(seed)
        self.reset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()  # every request, per prompt
        self.answered: Counter[str] = Counter()  # 200 answers with a completion, per prompt
        self.times: dict[str, list[float]] = defaultdict(list)
        self.bodies: dict[str, list[dict]] = defaultdict(list)
        self.headers: list[dict[str, str]] = []  # every request's headers, in arrival order
        self.all_bodies: list[dict] = []  # every request's body, in the same order
        self.total = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- running ---------------------------------------------------------------------------------
    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> OpenAIServer:
        """Serve from a background thread; returns once the port is bound."""
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._shutdown())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="openai-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the test OpenAI server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    async def _shutdown(self) -> None:
        """Stop listening, end open keep-alive connections, and let their handlers finish."""
        self._server.close()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- HTTP --------------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    raw = await reader.readline()
                    if raw in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, extra, payload = await self._route(method, path, headers, body)
                head = [
                    f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                    "content-type: application/json",
                    f"content-length: {len(payload)}",
                    *(f"{k}: {v}" for k, v in extra.items()),
                ]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _route(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        if method == "GET" and path == "/_stats":
            stats = {"total": self.total, "requests": dict(self.requests), "answered": dict(self.answered)}
            return 200, {}, json.dumps(stats).encode()
        if method == "POST" and path == "/_reset":
            self.reset()
            return 200, {}, b"{}"
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, _error(f"no route {method} {path}")
        return await self._chat(headers, json.loads(body))

    async def _chat(self, headers: dict, request: dict) -> tuple[int, dict, bytes]:
        self.total += 1
        messages = request.get("messages") or []
        prompt = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
        self.requests[prompt] += 1
        if self.record:
            self.headers.append(headers)
            self.all_bodies.append(request)
            self.times[prompt].append(time.monotonic())
            self.bodies[prompt].append(request)
        nth = self.requests[prompt]
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, _error("Incorrect API key provided")
        directives = [(m.group(1), m.group(2), m.group(3)) for m in DIRECTIVE.finditer(prompt)]
        flags = {d[0]: d for d in directives}
        if "echoauth" in flags:
            return 400, {}, _error(f"bad request from {headers.get('authorization')}")
        if "status" in flags:
            code = int(flags["status"][1])
            return code, {}, _error(f"forced status {code}")
        schedule = [(name, arg2) for name, arg1, arg2 in directives if name in COUNTED for _ in range(int(arg1 or 1))]
        behaviour, arg = schedule[nth - 1] if nth <= len(schedule) else ("ok", None)
        if self.rate_429 and self._random.random() < self.rate_429:
            behaviour = "429"
        if behaviour == "429":
            extra = {}
            if self.retry_after is not None:
                extra["retry-after"] = self.retry_after
            if self.retry_after_ms is not None:
                extra["retry-after-ms"] = self.retry_after_ms
            return 429, extra, _error("Rate limit reached, try again later")
        if behaviour in ("500", "503"):
            return int(behaviour), {}, _error("The server had an error")
        delay = self.latency + (float(flags["delay"][1]) if "delay" in flags else 0.0)
        if behaviour == "hang":
            delay += float(arg or 5)
        if delay:
            await asyncio.sleep(delay)
        if behaviour == "badbody":
            return 200, {}, b'{"choices": [ this is not json'
        content = self._answer(prompt, messages, request, behaviour)
        if "think" in flags:
            content = f"<think>Let me think about {prompt[:20]!r}. {{not json}}</think>\n{content}"
        self.answered[prompt] += 1
        usage = {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
            "completion_tokens": len(content.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        payload = {
            "id": f"chatcmpl-{self.total}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "test-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        }
        return 200, {}, json.dumps(payload).encode()

    def _answer(self, prompt: str, messages: list[dict], request: dict, behaviour: str) -> str:
        schema = _schema_of(messages, request)
        if schema is None:
            return f"echo: {prompt}"
        if behaviour == "malformed":
            return '{"echo": "this reply is cut off'
        if behaviour == "badschema":
            return json.dumps({"unexpected": True})
        props = schema.get("properties") or {}
        if not props:
            return json.dumps({"echo": prompt, "length": len(prompt)})
        return json.dumps({name: _value(spec, prompt) for name, spec in props.items()})


def _schema_of(messages: list[dict], request: dict) -> dict | None:
    """JSON mode: response_format given, or a system message asking for JSON (its schema, if any)."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt["json_schema"].get("schema") or {}
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    if "JSON Schema: " in system:
        return json.JSONDecoder().raw_decode(system.split("JSON Schema: ", 1)[1])[0]
    if fmt.get("type") == "json_object" or "JSON" in system:
        return {}
    return None


def _value(spec: dict, prompt: str) -> Any:
    if "enum" in spec:
        return spec["enum"][len(prompt) % len(spec["enum"])]
    kind = spec.get("type")
    if kind == "integer":
        return len(prompt)
    if kind == "number":
        return len(prompt) / 10
    if kind == "boolean":
        return len(prompt) % 2 == 0
    if kind == "array":
        return prompt.split()[:2] if (spec.get("items") or {}).get("type") in (None, "string") else []
    if kind == "object":
        props = spec.get("properties") or {}
        return {name: _value(sub, prompt) for name, sub in props.items()} if props else {"words": len(prompt.split())}
    return f"re: {prompt}"


def _error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "test_server_error"}}).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rate-429", type=float, default=0.0)
    parser.add_argument("--retry-after", default="1")
    parser.add_argument("--retry-after-ms", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="keep every body, header and arrival time (memory grows)")
    args = parser.parse_args(argv)
    server = OpenAIServer(
        latency=args.latency,
        rate_429=args.rate_429,
        retry_after=args.retry_after,
        retry_after_ms=args.retry_after_ms,
        seed=args.seed,
        port=args.port,
        record=args.record,
    )

    async def run() -> None:
        gc.freeze()  # the long-lived start-up objects stay out of every later collection
        await server.serve()
        print(f"LISTENING {server.url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
