"""What a satellite prints or logs while it runs is masked before it reaches a terminal or compute log.

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
from typing import Any, Iterator

from exo_dagster.runtime.secrets import Masker, masker

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
        except Exception:  # noqa: BLE001 - a bad format string is the caller's; keep the raw text
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
