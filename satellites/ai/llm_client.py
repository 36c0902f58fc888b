"""An OpenAI-compatible chat-completions client for per-row work: async, rate-limited, retrying.

Retries 429/5xx/timeouts/broken connections with exponential backoff and jitter, waiting at least
what `Retry-After` (or `retry-after-ms`) asks. Request and token budgets are token buckets that
hold no asyncio object, so one client serves every event loop a step runs (fan-out runs one loop
per batch); the HTTP connection pool is per loop and closed when that loop shuts down.
The API key is sent in a header and never appears in an error message.

Why aiohttp and not httpx: on this project's 2-core machines, httpx 0.28's connection pool managed
~110 requests/s at 64 concurrent requests against a 50 ms loopback server, aiohttp ~1,100 (the
ideal is 1,280); see BENCHMARKS.md, llm-complete.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from exo_dagster.errors import ExoError
from exo_dagster.sdk import retrying, step_errors
from exo_dagster.sdk.masking import mask
from exo_dagster.sdk.retrying import Retry

RETRIABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FATAL = frozenset({401, 403, 404})  # every other row would fail the same way: stop calling


class _Retryable(step_errors.TransientError):
    """An attempt that may succeed next time: why it failed, and the wait the server asked for."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.retry_after = retry_after


class LlmError(ExoError, RuntimeError):
    """A request that cannot succeed as sent (4xx other than 429, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None, fatal: bool = False):
        super().__init__(message)
        self.status, self.fatal = status, fatal


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TokenBucket:
    """`per_minute` units refilled continuously, bursts up to one second's worth; callers reserve
    ahead (the balance may go negative) and sleep for what they owe, so the pace is exact."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def reserve(self, cost: float) -> float:
        """Take `cost` units now; return the seconds to wait before using them."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= cost
        return max(0.0, -self.tokens / self.rate)

    def refund(self, amount: float) -> None:
        """Correct an estimate once the real usage is known (negative charges more)."""
        self.tokens = min(self.capacity, self.tokens + amount)


@dataclass
class _LoopSession:
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    closer: Any = None


@dataclass
class ChatClient:
    """POST /chat/completions with retries and budgets; `complete()` may be awaited from any loop."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 6
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_connections: int = 64
    mask_values: Iterable[str] = field(default=(), repr=False)
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        self.url = self.base_url.rstrip("/") + "/chat/completions"
        self._rpm = TokenBucket(self.requests_per_minute) if self.requests_per_minute else None
        self._tpm = TokenBucket(self.tokens_per_minute) if self.tokens_per_minute else None
        self._current: _LoopSession | None = None
        self._fatal: LlmError | None = None
        self._secrets = [v for v in (self.api_key, *self.mask_values) if v]
        self._retry: Retry | None = None

    # -- one pooled session per event loop -------------------------------------------------------
    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        current = self._current
        if current is None or current.loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections),
            )
            current = self._current = _LoopSession(loop, session)
            current.closer = self._close_with_loop(session)
            await current.closer.__anext__()  # asyncio.run() finalizes async generators: the pool closes there
        return current.session

    @staticmethod
    async def _close_with_loop(session: aiohttp.ClientSession):
        try:
            yield
        finally:
            await session.close()

    # -- budgets -----------------------------------------------------------------------------
    async def _acquire(self, estimated_tokens: int) -> None:
        wait = 0.0
        if self._rpm:
            wait = max(wait, self._rpm.reserve(1))
        if self._tpm:
            wait = max(wait, self._tpm.reserve(estimated_tokens))
        if wait > 0:
            await asyncio.sleep(wait)

    def _policy(self) -> Retry:
        """The retry policy (frozen, so built once per client, not once per request)."""
        if self._retry is None:
            self._retry = self._make_policy()
        return self._retry

    def _make_policy(self) -> Retry:
        return Retry(
            attempts=self.max_retries + 1,
            delay=self.backoff,
            max_delay=self.max_backoff,
            jitter=(0.5, 1.0),
            max_retry_after=self.max_retry_after,
            retry_after_jitter=(1.0, 1.1),
        )

    def _safe(self, text: str) -> str:
        return mask(text, self._secrets)

    # -- the call ----------------------------------------------------------------------------
    async def complete(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> Completion:
        """One chat completion; raises LlmError when it cannot succeed."""
        if self._fatal is not None:
            raise LlmError(str(self._fatal), self._fatal.status, fatal=True)
        estimate = estimate_tokens(body) if self._tpm else 0
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            return await retrying.acall(
                lambda: self._attempt(body, headers, estimate),
                self._policy(),
                retry_on=_Retryable,
                retry_after=lambda exc: exc.retry_after,
                on_retry=self._count_retry,
            )
        except _Retryable as exc:
            raise LlmError(self._safe(f"gave up after {self.max_retries + 1} attempts; last: {exc}")) from None

    def _count_retry(self, attempt: int, exc: BaseException, wait: float) -> None:
        self.stats.retries += 1

    async def _attempt(self, body: dict[str, Any], headers: dict[str, str] | None, estimate: int) -> Completion:
        """One request: the completion, LlmError when it cannot succeed, _Retryable when it may next time."""
        await self._acquire(estimate)
        session = await self._session()
        self.stats.requests += 1
        try:
            async with session.post(self.url, json=body, headers=headers) as response:
                status, raw, response_headers = response.status, await response.read(), response.headers
        except TimeoutError:
            self.stats.timeouts += 1
            raise _Retryable(f"timed out after {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None
        if status == 200:
            try:
                completion = parse_completion(json.loads(raw), body.get("model", ""))
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise _Retryable(f"unreadable response body ({type(exc).__name__}: {exc})") from None
            self._settle(estimate, completion, bool(body.get("max_tokens") or body.get("max_completion_tokens")))
            return completion
        if status in RETRIABLE:
            if status == 429:
                self.stats.rate_limited += 1
            else:
                self.stats.server_errors += 1
            raise _Retryable(f"HTTP {status}: {_excerpt(raw)}", retry_after_seconds(response_headers))
        error = LlmError(self._safe(f"HTTP {status} from {self.url}: {_excerpt(raw)}"), status, fatal=status in FATAL)
        if error.fatal:
            self._fatal = error
        raise error

    def _settle(self, estimate: int, completion: Completion, budgeted: bool) -> None:
        used = completion.prompt_tokens + completion.completion_tokens
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        if self._tpm and used and not budgeted:
            self._tpm.refund(estimate - used)  # providers count max_tokens when it is set: no refund then


def estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt characters / 4 plus the completion budget: what a token budget must reserve up front."""
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
    return chars // 4 + 1 + int(body.get("max_tokens") or body.get("max_completion_tokens") or 256)


def parse_completion(payload: Any, requested_model: str) -> Completion:
    choice = payload["choices"][0]
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # some servers return content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None:
        raise ValueError("the reply has no message content")
    usage = payload.get("usage") or {}
    return Completion(
        text=str(content),
        model=str(payload.get("model") or requested_model),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` (OpenAI, Azure), else `Retry-After` as seconds or an HTTP date."""
    headers = {k.lower(): v for k, v in headers.items()}
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _excerpt(raw: bytes, limit: int = 300) -> str:
    """An error body, shortened: the provider's `error.message` when it sends one."""
    text = raw.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict) and payload["error"].get("message"):
            text = str(payload["error"]["message"])
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")
