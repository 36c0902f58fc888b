"""Real servers on 127.0.0.1 for the notification tests: an HTTP(S) recorder and an SMTP server.

The HTTP recorder answers every request (status per path; `/redirect/...` redirects; `/echo` returns
the request's headers and body) and keeps what it received. The SMTP server is aiosmtpd, with
STARTTLS or implicit TLS (trustme certificates) and AUTH LOGIN/PLAIN against one known password.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]


@dataclass
class HttpRecorder:
    url: str
    requests: list[Request] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path -> status (default 200)
    fail_first: dict[str, int] = field(default_factory=dict)  # path -> how many requests answer 503 first
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 120.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(path)
            if len(got) >= count:
                return got
            time.sleep(0.2)
        raise AssertionError(
            f"{path}: expected {count} request(s) in {timeout}s, got {len(self.to(path))}; "
            f"all: {[(r.method, r.path) for r in self.requests]}"
        )


def _handler(recorder: HttpRecorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            with recorder.lock:
                recorder.requests.append(Request(self.command, self.path, dict(self.headers.items()), body))
                failing = recorder.fail_first.get(path, 0)
                if failing:
                    recorder.fail_first[path] = failing - 1
            if recorder.delay:
                time.sleep(recorder.delay)
            if path.startswith("/redirect/"):
                self._send(307, b"", {"Location": path[len("/redirect") :]})
            elif failing:
                self._send(503, b"try again")
            elif path == "/echo":
                echo = json.dumps(
                    {"headers": dict(self.headers.items()), "body": body.decode(errors="replace")}
                ).encode()
                self._send(200, echo, {"Content-Type": "application/json"})
            else:
                status = recorder.status.get(path, 200)
                self._send(status, b"" if status == 204 else b"ok")

        def _send(self, status: int, body: bytes, headers: dict | None = None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    return Handler


@contextlib.contextmanager
def http_server(tls: ssl.SSLContext | None = None) -> Iterator[HttpRecorder]:
    recorder = HttpRecorder(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    recorder.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (trustme)."""

    ca_pem: str
    server: ssl.SSLContext


def certificates(tmp_path) -> Certificates:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Certificates(str(path), server)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """An S3-compatible server on loopback (moto's server mode); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _forget_s3_filesystems()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        _forget_s3_filesystems()


def _forget_s3_filesystems() -> None:
    """s3fs caches one filesystem (and its endpoint) per set of options: a later test must not get a stopped
    server's."""
    try:
        from s3fs import S3FileSystem
    except ImportError:
        return
    S3FileSystem.clear_instance_cache()


@dataclass
class SmtpRecorder:
    port: int
    messages: list = field(default_factory=list)  # (envelope from, recipients, email.message.Message)
    logins: list = field(default_factory=list)


@contextlib.contextmanager
def smtp_server(
    *,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    user: str | None = None,
    password: str | None = None,
) -> Iterator[SmtpRecorder]:
    """aiosmtpd on 127.0.0.1: STARTTLS offered when `tls` is given (or implicit TLS), AUTH when `user`."""
    from email import message_from_bytes
    from email.policy import default as default_policy

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    recorder = SmtpRecorder(port=0)

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            recorder.messages.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    message_from_bytes(envelope.original_content or envelope.content, policy=default_policy),
                )
            )
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        recorder.logins.append(
            (mechanism, auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None, ok)
        )
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 235 or 535

    kwargs: dict = {}
    if user:
        # PLAIN only: smtplib's AUTH LOGIN sends an initial response that aiosmtpd 1.4 does not read, and both wait
        kwargs.update(authenticator=authenticator, auth_require_tls=tls is not None, auth_exclude_mechanism=["LOGIN"])
    if tls is not None and not implicit_tls:
        kwargs.update(tls_context=tls, require_starttls=True)
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=tls if implicit_tls else None,
        server_hostname="127.0.0.1",
        ready_timeout=30,
        **kwargs,
    )
    controller.start()
    recorder.port = controller.port
    try:
        yield recorder
    finally:
        controller.stop()


def step_context(
    tmp_path,
    *,
    rows=None,
    previous=None,
    secrets=None,
    input=None,
    config=None,
    satellite_id: str = "satellite/exospherehost/test",
    cache: bool = True,
):
    """A real StepContext for calling a satellite function directly (row cache in tmp_path)."""
    import polars as pl

    from exo_dagster import StepContext

    if isinstance(rows, list):
        rows = pl.DataFrame(rows).lazy()
    return StepContext(
        cluster="t/notify",
        step="s",
        run_id="run-1",
        input=input or {},
        rows=rows,
        tables={},
        previous=previous,
        secrets=secrets or {},
        base_dir=str(tmp_path),
        data_dir=str(tmp_path / "data"),
        identity=(satellite_id, "1.0.0", config or {}),
        cache_path=str(tmp_path / "rows.sqlite") if cache else None,
    )
