"""The HTTP server: takes events, runs them on the worker pool, answers with JSON.

``GET /healthz`` answers once the handler has been imported; ``POST /`` and
``POST /invoke`` run one invocation each. Every answer is JSON, errors included.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import sys
import threading
import time
import uuid
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from traceback import format_exc
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from kumo_runtime import __version__
from kumo_runtime.config import Config, ConfigError, load_config
from kumo_runtime.logs import LogWriter
from kumo_runtime.pool import (
    InvocationTimeout,
    Pool,
    PoolClosed,
    Worker,
    WorkerCrashed,
    WorkerStartError,
    make_pool,
)

INVOKE_PATHS = ("/", "/invoke")
HEALTH_PATH = "/healthz"
# After SIGTERM, invocations already received get this long beyond their own timeout to finish.
DRAIN_GRACE_SECONDS = 5.0


class InvalidEvent(Exception):
    """The request body is not an event the runtime can pass on (HTTP 400)."""


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one error shape: ``{"error": {"type", "message", ...}}``."""
    error: dict[str, Any] = {"type": kind, "message": message}
    error.update({key: value for key, value in extra.items() if value is not None})
    return {"error": error}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_event(body: bytes, headers: Message) -> tuple[Any, dict[str, Any] | None]:
    """The event and its CloudEvent attributes from a request.

    Binary mode: the body is the event, the attributes come from ``ce-*`` headers.
    Structured mode (``Content-Type: application/cloudevents+json``): the body is
    the envelope; its ``data`` is the event, the rest the attributes.
    """
    if not body.strip():
        event: Any = None
    else:
        try:
            event = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise InvalidEvent("the request body is not UTF-8 text") from None
        except RecursionError:
            raise InvalidEvent("the request body is JSON nested too deeply") from None
        except ValueError as exc:
            raise InvalidEvent(f"the request body is not valid JSON: {exc}") from None

    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/cloudevents+json":
        if not isinstance(event, dict):
            raise InvalidEvent("a structured-mode CloudEvent must be a JSON object")
        attributes = {key: value for key, value in event.items() if key not in ("data", "data_base64")}
        data = event.get("data", event.get("data_base64"))
        return data, attributes

    attributes = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower.startswith("ce-") and len(lower) > 3:
            # The HTTP binding percent-encodes attribute values.
            attributes[lower[3:]] = unquote(value)
    if not attributes:
        return event, None
    if headers.get("Content-Type"):
        attributes.setdefault("datacontenttype", headers["Content-Type"])
    return event, attributes


class Runtime:
    """Runs invocations on the pool and turns their outcome into an HTTP answer."""

    def __init__(self, config: Config, log: LogWriter, pool: Pool) -> None:
        self.config = config
        self.log = log
        self.pool = pool
        self.draining = False
        self._inflight = 0
        self._idle = threading.Condition()

    def invoke(self, event: Any, cloudevent: dict[str, Any] | None, request_id: str | None) -> tuple[int, dict[str, Any], str]:
        """Runs one invocation: returns the HTTP status, the body and the invocation id."""
        with self._idle:
            self._inflight += 1
        try:
            return self._invoke(event, cloudevent, request_id)
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _invoke(self, event: Any, cloudevent: dict[str, Any] | None, request_id: str | None) -> tuple[int, dict[str, Any], str]:
        config, log = self.config, self.log
        invocation_id = str(uuid.uuid4())
        queued = time.monotonic()
        try:
            worker = self.pool.acquire()
        except PoolClosed:
            log.error("invocation.failed", invocationId=invocation_id, requestId=request_id, status="error",
                      error={"type": "ShuttingDown", "message": "the function is shutting down"})
            return 503, error_body("ShuttingDown", "the function is shutting down", invocationId=invocation_id), invocation_id
        except WorkerStartError as exc:
            log.error("invocation.failed", invocationId=invocation_id, requestId=request_id, status="error",
                      error=exc.error, traceback=exc.traceback)
            reason = f"no worker could load the handler: {exc.error.get('message', '')}"
            return 500, error_body("WorkerStartFailed", reason, invocationId=invocation_id), invocation_id

        started = time.monotonic()
        deadline = time.time() + config.timeout_seconds
        ce_id = cloudevent.get("id") if cloudevent else None
        log.info("invocation.start", invocationId=invocation_id, requestId=request_id, ceId=ce_id, worker=worker.pid,
                 queuedMs=_ms(started - queued), monotonicMs=_ms(started))
        request = {
            "type": "invoke",
            "id": invocation_id,
            "event": event,
            "context": {"deadline": deadline, "cloudevent": cloudevent, "request_id": request_id},
        }
        lost = True  # until the worker answers: any surprise below must not leak its place in the pool
        try:
            status, body, lost = self._run(worker, request, invocation_id, started)
        finally:
            if lost:
                self.pool.discard(worker)
        if not lost:
            self.pool.release(worker)
        return status, body, invocation_id

    def _run(self, worker: Worker, request: dict[str, Any], invocation_id: str,
             started: float) -> tuple[int, dict[str, Any], bool]:
        """Runs the invocation on ``worker`` and logs its end.

        Returns the HTTP status, the body, and whether the worker was lost (timed out, crashed).
        """
        traceback: str | None = None
        message: dict[str, Any] | None = None
        try:
            message = worker.invoke(request, self.config.timeout_seconds)
        except InvocationTimeout:
            status, state = 504, "timeout"
            body = error_body("Timeout", f"the invocation exceeded {self.config.timeout_label} (KUMO_TIMEOUT_SECONDS) and was stopped",
                              invocationId=invocation_id)
        except WorkerCrashed as exc:
            status, state = 500, "error"
            body = error_body("WorkerCrashed", str(exc), invocationId=invocation_id)
        ended = time.monotonic()
        if message is not None and message.get("ok"):
            status, state = 200, "ok"
            body = {"result": message.get("result"), "invocationId": invocation_id, "durationMs": _ms(ended - started)}
        elif message is not None:
            status, state = 500, "error"
            error = dict(message.get("error") or {"type": "HandlerError", "message": "unknown error"})
            error["invocationId"] = invocation_id
            body = {"error": error}
            traceback = message.get("traceback")
        # The end line is written before the worker is handed on, so with a
        # concurrency of 1 each start line follows the previous end line.
        error_fields = {k: v for k, v in body["error"].items() if k != "invocationId"} if "error" in body else None
        self.log.emit("info" if state == "ok" else "error", "invocation.end", invocationId=invocation_id,
                      requestId=request.get("context", {}).get("request_id"), worker=worker.pid, status=state,
                      httpStatus=status, durationMs=_ms(ended - started), monotonicMs=_ms(ended),
                      error=error_fields, traceback=traceback)
        return status, body, message is None

    def wait_idle(self, timeout: float, force: threading.Event) -> bool:
        """Waits until no invocation is running or queued; ``False`` if ``timeout`` or ``force`` came first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or force.is_set():
                    return False
                self._idle.wait(min(remaining, 0.2))
        return True


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class RequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every answer is JSON with a Content-Length."""

    protocol_version = "HTTP/1.1"
    server_version = f"kumo-runtime/{__version__}"
    runtime: Runtime  # set on the subclass made by serve()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            if self.runtime.draining:
                self._send_json(503, {"status": "draining"})
            else:
                self._send_json(200, {"status": "ok"})
        elif path in INVOKE_PATHS:
            self._method_not_allowed("POST")
        else:
            self._not_found(path)

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path not in INVOKE_PATHS:
            self.close_connection = True  # the body is left unread
            if path == HEALTH_PATH:
                self._method_not_allowed("GET")
            else:
                self._not_found(path)
            return
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send_json(400, error_body("BadRequest", str(exc)))
            return
        try:
            event, cloudevent = parse_event(body, self.headers)
        except InvalidEvent as exc:
            self.runtime.log.info("request.rejected", status="error", httpStatus=400,
                                  error={"type": "InvalidEvent", "message": str(exc)})
            self._send_json(400, error_body("InvalidEvent", str(exc)))
            return
        try:
            status, answer, invocation_id = self.runtime.invoke(event, cloudevent, self.headers.get("X-Request-Id"))
        except Exception as exc:  # a bug in the runtime: answer, log, keep serving
            self.runtime.log.error("runtime.error", error={"type": type(exc).__name__, "message": str(exc)},
                                   traceback=format_exc())
            self._send_json(500, error_body("InternalError", "the runtime failed to run the invocation"))
            return
        self._send_json(status, answer, {"X-Kumo-Invocation-Id": invocation_id})

    def _other_method(self) -> None:
        self.close_connection = True
        path = urlsplit(self.path).path
        if path == HEALTH_PATH:
            self._method_not_allowed("GET")
        elif path in INVOKE_PATHS:
            self._method_not_allowed("POST")
        else:
            self._not_found(path)

    do_PUT = do_PATCH = do_DELETE = _other_method

    def _method_not_allowed(self, allowed: str) -> None:
        self._send_json(405, error_body("MethodNotAllowed", f"{self.command} is not allowed here; use {allowed}"),
                        {"Allow": allowed})

    def _not_found(self, path: str) -> None:
        self._send_json(404, error_body("NotFound", f"no such path: {path}; POST events to / or /invoke"))

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ValueError(f"Content-Length is not a number: {length!r}") from None
        if size < 0:
            raise ValueError(f"Content-Length is negative: {size}")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("malformed chunked body") from None
            if size == 0:
                # Trailers, up to the blank line that ends the body.
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if self.runtime.draining:
            self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The caller hung up; the invocation's outcome is in the logs.
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (malformed request line, unknown method) as JSON too.
        self.close_connection = True
        kinds = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 414: "BadRequest", 431: "BadRequest",
                 501: "MethodNotAllowed", 505: "BadRequest"}
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._send_json(code, error_body(kinds.get(code, "HTTPError"), message or phrase))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Invocations have their own lines; access lines would only repeat them.
        pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        self.runtime.log.error("http.error", message=format % args, client=self.client_address[0])


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    runtime: Runtime

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints these to stderr; here they are log lines, and a
        # caller hanging up is not worth one.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        self.runtime.log.error("http.error", message=f"{type(exc).__name__}: {exc}", client=str(client_address[0]),
                               traceback=format_exc())


class Server6(Server):
    address_family = socket.AF_INET6


def serve(config: Config, runtime: Runtime) -> Server:
    """Binds the listening socket (IPv6 when the host is an IPv6 address, e.g. ``::``)."""
    handler = type("BoundRequestHandler", (RequestHandler,), {"runtime": runtime})
    server_class = Server6 if ":" in config.host else Server
    server = server_class((config.host, config.port), handler)
    server.runtime = runtime
    return server


def main() -> int:
    """Starts the function: load the handler, listen, serve until SIGTERM or SIGINT. Returns the exit code."""
    log = LogWriter(os.environ.get("KUMO_FUNCTION") or "function", os.environ.get("K_REVISION") or None)
    try:
        config = load_config()
    except ConfigError as exc:
        log.error("startup.failed", error={"type": "InvalidConfig", "message": str(exc)})
        return 1
    log = LogWriter(config.function, config.revision)

    pool = make_pool(log, config.concurrency, config.init_timeout_seconds)
    started = time.monotonic()
    try:
        pool.warm_up()
    except WorkerStartError as exc:
        log.error("startup.failed", handler=config.handler, error=exc.error, traceback=exc.traceback)
        pool.close()
        return 1

    runtime = Runtime(config, log, pool)
    try:
        server = serve(config, runtime)
    except OSError as exc:
        log.error("startup.failed", handler=config.handler,
                  error={"type": "ListenFailed", "message": f"cannot listen on {config.host}:{config.port}: {exc}"})
        pool.close()
        return 1

    stop = threading.Event()
    force = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        (force if stop.is_set() else stop).set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kumo-http", daemon=True)
    thread.start()
    log.info("startup", handler=config.handler, host=config.host, port=server.server_address[1],
             concurrency=config.concurrency, timeoutSeconds=config.timeout_seconds, pid=os.getpid(),
             python=platform.python_version(), runtime=__version__, startMs=_ms(time.monotonic() - started))

    while not stop.wait(1.0):
        pass
    log.info("shutdown.started", signal=received[0] if received else None)
    runtime.draining = True
    server.shutdown()
    server.server_close()
    drained = runtime.wait_idle(config.timeout_seconds + DRAIN_GRACE_SECONDS, force)
    pool.close()
    log.info("shutdown", drained=drained)
    sys.stdout.flush()
    return 0
