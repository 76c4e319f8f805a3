"""Structured logs: one JSON object per line on stdout.

Only the serving process writes to stdout. Workers send their lines (the
handler's prints, ``context.logger`` records) over their result pipe, and the
server writes them here under one lock, so lines from concurrent invocations
never interleave mid-line.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import Any, BinaryIO


def now_iso() -> str:
    """The current time as ISO-8601 in UTC with microseconds, e.g. ``2024-05-01T12:00:00.123456Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class LogWriter:
    """Writes log lines carrying the function's name and revision."""

    def __init__(self, function: str, revision: str | None, out: BinaryIO | None = None) -> None:
        self.function = function
        self.revision = revision
        self._out = out if out is not None else sys.stdout.buffer
        self._lock = threading.Lock()

    def emit(self, level: str, msg: str, *, ts: str | None = None, **fields: Any) -> None:
        """Writes one line. Fields whose value is ``None`` are left out."""
        record: dict[str, Any] = {"ts": ts or now_iso(), "level": level, "msg": msg, "function": self.function}
        if self.revision is not None:
            record["revision"] = self.revision
        for key, value in fields.items():
            if value is not None:
                record[key] = value
        line = (json.dumps(record, ensure_ascii=False, default=repr) + "\n").encode("utf-8", "replace")
        with self._lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):
                # stdout is gone (closed pipe): nothing left to tell, and serving goes on.
                pass

    def info(self, msg: str, **fields: Any) -> None:
        self.emit("info", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.emit("error", msg, **fields)
