"""Secrets: pluggable backends, least privilege, and masking of everything a satellite can emit."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from exo_dagster import Registry, SatelliteConfig, StepContext, compile_cluster, parse_cluster, satellite
from exo_dagster.catalog.registry import builtin_registry
from exo_dagster.runtime import secrets as S
from exo_dagster.spec.parser import SecretSource


def test_env_file_and_chained_backends(tmp_path):
    (tmp_path / "DB_PASSWORD").write_text("from-file-pw\n")
    source = SecretSource("env", "DB_PASSWORD")
    assert S.secret_value("PW", source, {"DB_PASSWORD": "from-env-pw"}) == "from-env-pw"
    environ = {"EXO_SECRETS_BACKEND": f"file:{tmp_path},env", "DB_PASSWORD": "from-env-pw", "ONLY_ENV": "env-only"}
    assert S.secret_value("PW", source, environ) == "from-file-pw"  # the file wins, newline stripped
    assert S.secret_value("X", SecretSource("env", "ONLY_ENV"), environ) == "env-only"
    with pytest.raises(S.MissingSecret, match=f"file `{tmp_path}/NOPE` or environment variable `NOPE`"):
        S.secret_value("X", SecretSource("env", "NOPE"), environ)
    assert S.FileBackend(tmp_path).get("../etc/passwd") is None


class DictBackend:
    """A custom backend, as a user would plug in (Vault, AWS Secrets Manager...)."""

    store = {"API_TOKEN": "tok-from-custom-backend"}

    def get(self, name: str) -> str | None:
        return self.store.get(name)


def test_custom_backend_by_module_and_class():
    environ = {"EXO_SECRETS_BACKEND": f"{__name__}:DictBackend"}
    assert S.secret_value("T", SecretSource("env", "API_TOKEN"), environ) == "tok-from-custom-backend"
    with pytest.raises(ValueError, match="unknown secrets backend `vault`"):
        S.default_backend({"EXO_SECRETS_BACKEND": "vault"})
    with pytest.raises(ValueError, match="cannot load secrets backend"):
        S.default_backend({"EXO_SECRETS_BACKEND": "no_such_module_xyz:Backend"})


def test_masking_helpers():
    secret = "sk-live-0123456789"
    assert S.mask(f"auth={secret}&x=1", [secret]) == "auth=********&x=1"
    assert S.mask_value({"a": [f"Bearer {secret}"], "b": 3}, [secret]) == {"a": ["Bearer ********"], "b": 3}
    frame = pl.DataFrame({"echo": [f"token {secret}", "clean"], "n": [1, 2]})
    assert S.mask_output(frame.lazy(), [secret]).collect()["echo"].to_list() == ["token ********", "clean"]
    assert S.mask("abc", ["abc"]) == "abc"  # too short to mask without masking ordinary words

    seen = []

    class Log:
        def info(self, msg, **kw):
            seen.append(msg)

    S.MaskingLog(Log(), [secret]).info("calling with %s", secret)
    assert seen == ["calling with ********"]


SEEN: dict = {}


class LeakyConfig(SatelliteConfig):
    header: str = ""
    crash: bool = False


def _registry() -> Registry:
    extra = Registry()

    @satellite("satellite/test/leaky", config=LeakyConfig, registry=extra)
    def leaky(ctx: StepContext, config: LeakyConfig):
        SEEN["secrets"] = dict(ctx.secrets)
        token = ctx.secrets.get("TOKEN", "")
        ctx.log.info(f"token is {token}; header is {config.header}")
        ctx.log.warning("token again: %s", token)
        ctx.metadata["exo/debug"] = f"used {token}"
        if config.crash:
            raise RuntimeError(f"server refused {token}")
        return pl.DataFrame({"echo": [f"{token} / {config.header}"], "n": [1]})

    @satellite("satellite/test/nosy", config=LeakyConfig, registry=extra)
    def nosy(ctx: StepContext, config: LeakyConfig):
        SEEN["nosy"] = dict(ctx.secrets)
        return [{"ok": 1}]

    return builtin_registry().merged(extra)


CLUSTER = """\
version: 0.0.1b
cluster:
  identifier: t/secrets
  secrets:
    - TOKEN: ${{ env.EXO_T_TOKEN }}
    - OTHER: ${{ env.EXO_T_OTHER }}
  satellites:
    - name: Leaky
      uses: satellite/test/leaky
      config:
        header: "Bearer ${{ secrets.OTHER }}"
        crash: CRASH
        secrets:
          - TOKEN: ${{ secrets.TOKEN }}
    - name: Nosy
      uses: satellite/test/nosy
"""


def _run(tmp_path, crash: bool):
    cluster = parse_cluster(
        CLUSTER.replace("CRASH", str(crash).lower()), str(tmp_path / "s.yaml"), registry=_registry()
    )
    instance = dg.DagsterInstance.ephemeral()
    result = (
        compile_cluster(cluster)
        .resolve_job_def(cluster.job_name)
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    return result, instance


def _event_text(instance, run_id) -> str:
    return "\n".join(entry.to_json() for entry in instance.all_logs(run_id))


def test_least_privilege_and_no_secret_in_logs_metadata_or_output(tmp_path, monkeypatch):
    token, other = "tok-9d8c7b6a5f4e", "oth-1a2b3c4d5e6f"
    monkeypatch.setenv("EXO_T_TOKEN", token)
    monkeypatch.setenv("EXO_T_OTHER", other)
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    result, instance = _run(tmp_path, crash=False)
    assert result.success
    assert SEEN["secrets"] == {"TOKEN": token} and SEEN["nosy"] == {}
    events = _event_text(instance, result.run_id)
    assert "token is ********; header is Bearer ********" in events and "token again: ********" in events
    assert token not in events and other not in events
    stored = pl.read_parquet(tmp_path / "exo" / "outputs" / "t__secrets" / "leaky.parquet")
    assert stored["echo"].to_list() == ["******** / Bearer ********"]


def test_an_error_quoting_a_secret_is_masked(tmp_path, monkeypatch):
    token, other = "tok-0f1e2d3c4b5a", "oth-6f7e8d9c0b1a"
    monkeypatch.setenv("EXO_T_TOKEN", token)
    monkeypatch.setenv("EXO_T_OTHER", other)
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    result, instance = _run(tmp_path, crash=True)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_failure_data.user_failure_data.description == "RuntimeError: server refused ********"
    events = _event_text(instance, result.run_id)
    assert token not in events and other not in events and "server refused ********" in events


# -- encoded forms and fragments (issue 10) ------------------------------------------------------
def test_masks_encoded_forms_and_fragments():
    import base64
    import json
    import urllib.parse

    secret = 'pa55/w0rd+with spaces&"quotes"-0123456789'
    texts = {
        "url": "GET /x?key=" + urllib.parse.quote(secret, safe=""),
        "url-plus": "body=" + urllib.parse.quote_plus(secret),
        "json": json.dumps({"key": secret}),
        "base64": base64.b64encode(secret.encode()).decode(),
        "basic": "Basic " + base64.b64encode(f"user:{secret}".encode()).decode(),
        "basic-2": "Basic " + base64.b64encode(f"us:{secret}".encode()).decode(),
        "urlsafe": base64.urlsafe_b64encode(f"u:{secret}".encode()).decode(),
        "hex": secret.encode().hex(),
        "pydantic": f"input_value='{secret[:20]}...{secret[-8:]}'",
    }
    for name, text in texts.items():
        masked = S.mask(text, [secret])
        assert "********" in masked, name
        for i in range(len(secret) - 7):
            assert secret[i : i + 8] not in masked, (name, secret[i : i + 8])
    assert S.mask("an ordinary sentence about words", [secret]) == "an ordinary sentence about words"


def test_leak_guard_masks_prints_split_writes_and_logging(capfd, caplog):
    import logging
    import sys

    from exo_dagster.sdk.internal import leak_guard

    secret = "guarded-SECRET-value-42"
    with leak_guard.guarded([secret]):
        print("print:", secret)
        sys.stdout.write("split: " + secret[:6])
        sys.stdout.write(secret[6:] + "\n")
        sys.stdout.write("no newline at the end " + secret)
        try:
            raise RuntimeError(secret)
        except RuntimeError:
            logging.getLogger("exo.test.leak").exception("failed with %s", secret)
    print("after:", secret)  # outside the step: not ours to touch
    out = capfd.readouterr()
    assert "print: ********" in out.out and "split: ********" in out.out and "end ********" in out.out
    assert out.out.count(secret) == 1
    [record] = [r for r in caplog.records if r.name == "exo.test.leak"]
    formatted = logging.Formatter().format(record)
    assert "failed with ********" in formatted and "RuntimeError: ********" in formatted and secret not in formatted
