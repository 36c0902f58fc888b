"""What a step prints, logs or raises is masked before it reaches a terminal, compute log or the event log.

`ctx.log` is masked by `secrets.MaskingLog`; this covers the rest of Python: `print` and writes to
`sys.stdout`/`sys.stderr` (line-buffered, so a secret split over several writes is still caught) and
every `logging` record created during the step (its message, arguments and traceback). Bytes a C
extension writes straight to file descriptors 1 and 2 are not seen here.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from exo_dagster.sdk.masking import Masker, mask_exception, masker

_FLUSH_AT = 1 << 16


class MaskingStream:
    """A text stream that masks whole lines before passing them on."""

    def __init__(self, stream: Any, masking: Masker):
        self._stream, self._mask = stream, masking
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            cut = self._pending.rfind("\n") + 1
            if not cut and len(self._pending) > _FLUSH_AT:
                cut = len(self._pending)
            if cut:
                ready, self._pending = self._pending[:cut], self._pending[cut:]
                self._stream.write(self._mask(ready))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def close_pending(self) -> None:
        with self._lock:
            if self._pending:
                self._stream.write(self._mask(self._pending))
                self._pending = ""
        self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _masking_factory(previous, masking: Masker):
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg, record.args = masking(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = masking("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = masking(record.stack_info)
        return record

    return factory


@contextlib.contextmanager
def guarded(values: list[str]) -> Iterator[None]:
    """Mask `values` in stdout, stderr and logging records for the duration of the block."""
    masking = masker(values)
    if not masking:
        yield
        return
    out, err = MaskingStream(sys.stdout, masking), MaskingStream(sys.stderr, masking)
    previous_factory = logging.getLogRecordFactory()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    logging.setLogRecordFactory(_masking_factory(previous_factory, masking))
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous_factory)
        sys.stdout, sys.stderr = old_out, old_err
        out.close_pending()
        err.close_pending()


@contextlib.contextmanager
def masked(values: list[str]) -> Iterator[None]:
    """`guarded`, and an exception leaving the block carries no secret in its text or chain (`mask_exception`).
    Every exo callback Dagster calls in a step (compute, output writing and loading) runs inside one, so an
    error raised anywhere in the step, e.g. a lazy query failing only when its output is written, is masked."""
    masking = masker(values)
    if not masking:
        yield
        return
    with guarded(values):
        try:
            yield
        except BaseException as exc:
            clean = mask_exception(exc, masking)
            if clean is exc:
                raise
            if clean.__cause__ is None and not clean.__suppress_context__:
                clean.__cause__ = clean.__context__  # the cleaned chain stays shown...
            clean.__suppress_context__ = True  # ... and `exc`, which raising here makes the context, never is
            raise clean  # noqa: B904


_RUN_VALUES: dict[str, frozenset[str]] = {}
_RUNS_KEPT = 64


def remember(run_id: str, values: list[str]) -> None:
    """Note the secrets a step of `run_id` sees, for what this process does later in that run: writing the step's
    output (after its compute returned, in the IO manager), loading it, writing a fan-out chunk."""
    if not values:
        return
    if run_id not in _RUN_VALUES and len(_RUN_VALUES) >= _RUNS_KEPT:
        _RUN_VALUES.pop(next(iter(_RUN_VALUES)))
    _RUN_VALUES[run_id] = _RUN_VALUES.get(run_id, frozenset()) | frozenset(values)


def run_values(run_id: str | None) -> list[str]:
    """Every secret the steps of `run_id` computed in this process so far saw (masked in all its later errors)."""
    return sorted(_RUN_VALUES.get(run_id or "", ()))
