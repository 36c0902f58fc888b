"""The per-row masking fast path masks exactly what `mask_value` masks (it only skips clean texts faster)."""

from __future__ import annotations

import base64
import json
import urllib.parse

from exo_dagster.sdk.masking import MASK, Masker, mask_value, value_masker

SECRETS = ["sk-live-0123456789abcdef", "pw12", "hunter22"]


def _texts() -> list[str]:
    long_secret = SECRETS[0]
    texts = [
        "",
        "a",
        "plain answer",
        "echo: row 1234",
        "x" * 600 + long_secret,
        "ends with pw12",
        "hunter2",
        f"key={long_secret}",
        f"frag {long_secret[3:11]} end",
        urllib.parse.quote(long_secret),
        json.dumps({"k": long_secret}),
        base64.b64encode(b"user:" + long_secret.encode()).decode(),
        long_secret.encode().hex(),
        "hunter22!",
        "no secret here at all, just text " * 3,
    ]
    return texts + [t[:i] for t in texts for i in (7, 8, 9, 20)]


def test_masker_agrees_with_the_regex_path_on_every_text():
    masker = Masker(SECRETS)
    for text in _texts():
        spans = masker.spans(text) if text else []
        expected = text
        for start, end in reversed(spans):
            expected = expected[:start] + MASK + expected[end:]
        assert masker(text) == expected, text


def test_value_masker_equals_mask_value_on_nested_results():
    walk = value_masker(SECRETS)
    for text in _texts():
        value = {"text": text, "n": 3, "items": [text, 1.5, None, (text, "ok")], text or "k": {"deep": text}}
        assert walk(value) == mask_value(value, SECRETS)
    assert walk({"a": f"x {SECRETS[0]} y"}) == {"a": f"x {MASK} y"}
    assert value_masker([])({"a": SECRETS[0]}) == {"a": SECRETS[0]}  # no secrets: nothing to mask
