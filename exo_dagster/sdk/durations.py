"""Durations as the spec and satellites write them: `30`, `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"`."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(ms|s|m|h|d)?\s*$")
MAX_DURATION_SECONDS = 366 * 86400  # longer is a typo (and would overflow timers and dagster/max_runtime)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration_seconds(value: Any) -> float:
    """`30`, `2.5`, `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"1d"` -> seconds (a plain number is seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        seconds = float(value) if abs(value) < 1e300 else float("inf")
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f"{str(value)[:40]!r} is not a duration; write seconds (30) or a number with a unit: 500ms, 10s, 5m, "
                "1h, 1d"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds <= MAX_DURATION_SECONDS:
        raise ValueError(f"a duration may be at most 366 days ({MAX_DURATION_SECONDS} s)")
    return seconds
