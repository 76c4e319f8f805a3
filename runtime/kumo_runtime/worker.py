"""A worker process: imports the handler once, then runs one invocation at a time.

The server starts each worker as ``python3 -m kumo_runtime --worker REQ RESP``
and talks to it over two pipes given by file descriptor, one JSON object per line:

* server → worker (``REQ``): ``{"type": "invoke", "id", "event", "context"}``.
* worker → server (``RESP``): ``{"type": "ready"}`` or ``{"type": "failed",
  "error", "traceback"}`` once, after importing the handler; then per invocation
  any number of ``{"type": "log", "record"}`` and one ``{"type": "result", "id",
  "ok", ...}``.

Handlers run in a process of their own so that a runaway one can be stopped by
ending the process: a thread cannot be killed. The worker's own stdout and
stderr (file descriptors 1 and 2) are pipes the server reads too, so output that
bypasses ``sys.stdout`` (a subprocess, a C extension) is still logged.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from typing import Any, Callable

from kumo_runtime.config import Config, load_config
from kumo_runtime.context import Context
from kumo_runtime.logs import now_iso

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_IMPORTLIB_DIR = os.path.dirname(os.path.abspath(importlib.__file__))

# The invocation being run, stamped on every line the handler produces. A worker
# runs one invocation at a time, so one global is exact for the handler's own
# thread (and best effort for threads it leaves running).
_current: str | None = None

# A line longer than this without a newline is sent in pieces.
_MAX_LINE = 64 * 1024


class StartupError(Exception):
    """The handler cannot be loaded, for a reason that is not a Python exception of its own."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Channel:
    """The worker's side of the result pipe: whole JSON lines, one writer at a time."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "wb")
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        self.send_line(json.dumps(message, ensure_ascii=False, default=repr))

    def send_line(self, line: str) -> None:
        data = (line + "\n").encode("utf-8", "replace")
        with self._lock:
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError):
                # The server is gone: nobody is left to serve.
                os._exit(1)

    def log(self, record: dict[str, Any]) -> None:
        record.setdefault("ts", now_iso())
        if _current is not None:
            record.setdefault("invocationId", _current)
        self.send({"type": "log", "record": record})


class _BytesCapture(io.RawIOBase):
    """``sys.stdout.buffer`` for code that writes bytes."""

    def __init__(self, text: "OutputCapture") -> None:
        super().__init__()
        self._text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._text.write(bytes(data).decode("utf-8", "replace"))
        return len(data)


class OutputCapture(io.TextIOBase):
    """Replaces ``sys.stdout`` / ``sys.stderr``: each line written becomes a log line."""

    def __init__(self, channel: Channel, stream: str, fd: int) -> None:
        super().__init__()
        self._channel = channel
        self._stream = stream
        self._fd = fd
        self._level = "info" if stream == "stdout" else "error"
        self._pending = ""
        self._lock = threading.RLock()
        self._buffer = _BytesCapture(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    @property
    def name(self) -> str:
        return f"<{self._stream}>"

    @property
    def buffer(self) -> _BytesCapture:
        return self._buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Subprocesses given sys.stdout write to the real descriptor, which the server also reads.
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                *lines, self._pending = self._pending.split("\n")
                for line in lines:
                    self._emit(line)
            while len(self._pending) > _MAX_LINE:
                self._emit(self._pending[:_MAX_LINE])
                self._pending = self._pending[_MAX_LINE:]
        return len(text)

    def flush(self) -> None:
        # Lines are sent as they complete; a partial line waits for its newline
        # (or the end of the invocation), so print(..., end="", flush=True) does
        # not scatter one line over many log records.
        pass

    def drain(self) -> None:
        """Sends a partial last line, if any."""
        with self._lock:
            if self._pending:
                self._emit(self._pending)
                self._pending = ""

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.strip():
            self._channel.log({"level": self._level, "msg": line, "stream": self._stream})


class ChannelLogHandler(logging.Handler):
    """Turns ``logging`` records into structured log lines with the invocation id."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self._channel = channel
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line: dict[str, Any] = {
                "ts": datetime.fromtimestamp(record.created, timezone.utc)
                .isoformat(timespec="microseconds")
                .replace("+00:00", "Z"),
                "level": record.levelname.lower(),
                "msg": record.getMessage().rstrip("\n"),
                "logger": record.name,
            }
            if record.exc_info:
                line["traceback"] = self._formatter.formatException(record.exc_info)
            if record.stack_info:
                line["stack"] = self._formatter.formatStack(record.stack_info)
            self._channel.log(line)
        except Exception:
            self.handleError(record)


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the runtime's and importlib's own frames."""
    te = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending: list[traceback.TracebackException] = [te]
    # Trim every exception in the chain (`raise ... from`, "During handling of ...").
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = traceback.StackSummary.from_list(
            [frame for frame in current.stack if not _is_runtime_frame(frame.filename)]
        )
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return "".join(te.format()).rstrip("\n")


def _is_runtime_frame(filename: str) -> bool:
    if filename.startswith("<frozen importlib"):
        return True
    return os.path.dirname(os.path.abspath(filename)) in (_PACKAGE_DIR, _IMPORTLIB_DIR)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def load_handler(config: Config) -> Callable[..., Any]:
    """Imports the handler's module from the code directory and returns the function."""
    code_dir = os.path.abspath(config.code_dir)
    if not os.path.isdir(code_dir):
        raise StartupError("CodeDirNotFound", f"KUMO_CODE_DIR {config.code_dir!r} is not a directory")
    sys.path.insert(0, code_dir)
    module = importlib.import_module(config.module_name)
    if not hasattr(module, config.function_name):
        raise StartupError(
            "HandlerNotFound",
            f"module {config.module_name!r} has no attribute {config.function_name!r} (KUMO_HANDLER={config.handler})",
        )
    function: Callable[..., Any] = getattr(module, config.function_name)
    if not callable(function):
        raise StartupError(
            "HandlerNotCallable",
            f"{config.handler} is not callable: it is of type {type(function).__name__} (KUMO_HANDLER={config.handler})",
        )
    return function


def describe_startup_failure(exc: BaseException, code_dir: str | None) -> dict[str, Any]:
    """The ``error`` object of a ``startup.failed`` line: type, message, and where, when known."""
    if isinstance(exc, StartupError):
        return {"type": exc.kind, "message": _safe_str(exc)}
    error: dict[str, Any] = {"type": type(exc).__name__, "message": _safe_str(exc)}
    if isinstance(exc, SyntaxError):
        error["file"] = _relative_to(exc.filename, code_dir)
        error["line"] = exc.lineno
        if exc.offset is not None:
            error["column"] = exc.offset
        if exc.text:
            error["text"] = exc.text.strip()
    elif isinstance(exc, ModuleNotFoundError) and exc.name:
        error["module"] = exc.name
    return error


def _relative_to(path: str | None, base: str | None) -> str | None:
    """A path inside the code directory as the user wrote it (``handler.py``), others as they are."""
    if not path or not base:
        return path
    absolute, root = os.path.abspath(path), os.path.abspath(base)
    if os.path.commonpath([absolute, root]) == root:
        return os.path.relpath(absolute, root)
    return path


class Worker:
    """Runs invocations one after another for the server."""

    def __init__(self, channel: Channel, config: Config, handler: Callable[..., Any], logger: logging.Logger) -> None:
        self._channel = channel
        self._config = config
        self._handler = handler
        self._logger = logger

    def serve(self, requests: io.BufferedReader) -> None:
        for line in requests:
            message = json.loads(line)
            if message.get("type") == "invoke":
                self.invoke(message)

    def invoke(self, message: dict[str, Any]) -> None:
        global _current
        invocation_id = message["id"]
        details = message.get("context") or {}
        _current = invocation_id
        context = Context(
            invocation_id=invocation_id,
            function=self._config.function,
            revision=self._config.revision,
            deadline=float(details.get("deadline") or time.time() + self._config.timeout_seconds),
            cloudevent=details.get("cloudevent"),
            request_id=details.get("request_id"),
            logger=self._logger,
        )
        try:
            result = self._handler(message.get("event"), context)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a handler is its error too
            self._finish_output()
            self._channel.send(
                {
                    "type": "result",
                    "id": invocation_id,
                    "ok": False,
                    "error": {"type": "HandlerError", "exception": type(exc).__name__, "message": _safe_str(exc)},
                    "traceback": format_traceback(exc),
                }
            )
            _current = None
            return
        self._finish_output()
        try:
            encoded = json.dumps(result, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            self._channel.send(
                {
                    "type": "result",
                    "id": invocation_id,
                    "ok": False,
                    "error": {
                        "type": "ResultNotSerializable",
                        "message": f"the handler returned a value that is not JSON-serialisable: {_safe_str(exc)}",
                    },
                }
            )
        else:
            # The result is spliced in already encoded: it was just checked.
            self._channel.send_line(
                '{"type": "result", "id": ' + json.dumps(invocation_id) + ', "ok": true, "result": ' + encoded + "}"
            )
        _current = None

    @staticmethod
    def _finish_output() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, OutputCapture):
                stream.drain()


def _watch_parent() -> None:
    """Ends this worker if the server dies, even in the middle of a runaway handler."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="kumo-watch-parent", daemon=True).start()


def main(argv: list[str]) -> int:
    """Entry point of a worker: ``argv`` is the two pipe descriptors (requests, results)."""
    request_fd, result_fd = int(argv[0]), int(argv[1])
    # Keep the pipes out of any program the handler runs.
    os.set_inheritable(request_fd, False)
    os.set_inheritable(result_fd, False)
    channel = Channel(result_fd)
    _watch_parent()

    sys.stdin = open(os.devnull, encoding="utf-8")
    sys.stdout = OutputCapture(channel, "stdout", 1)
    sys.stderr = OutputCapture(channel, "stderr", 2)

    code_dir: str | None = None
    try:
        config = load_config()
        code_dir = config.code_dir
        root = logging.getLogger()
        root.handlers[:] = [ChannelLogHandler(channel)]
        root.setLevel(config.log_level.upper())
        # warnings.warn() as one structured line (logger "py.warnings") instead of two stderr lines.
        logging.captureWarnings(True)
        handler = load_handler(config)
    except BaseException as exc:  # noqa: BLE001 - whatever the import raises is the startup failure
        Worker._finish_output()
        # A StartupError is the runtime's finding, not a failure in the user's code: no traceback.
        trace = None if isinstance(exc, StartupError) else format_traceback(exc)
        channel.send({"type": "failed", "error": describe_startup_failure(exc, code_dir), "traceback": trace})
        return 1
    Worker._finish_output()
    channel.send({"type": "ready", "pid": os.getpid()})

    worker = Worker(channel, config, handler, logging.getLogger(config.function))
    with os.fdopen(request_fd, "rb") as requests:
        worker.serve(requests)
    return 0
