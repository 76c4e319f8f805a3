"""The server's side of the worker processes: start, invoke, stop, and a pool of them.

Each worker runs one invocation at a time, so the pool's size is the number of
invocations that can run at once. A worker that times out or dies is ended (its
whole process group, so programs the handler started go too) and replaced.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from kumo_runtime.logs import LogWriter

# How long a stopping worker gets to finish on its own before it is killed.
_STOP_GRACE_SECONDS = 2.0
# Extra time to wait for a killed worker's last words before giving up on them.
_KILL_BACKSTOP_SECONDS = 10.0


class WorkerStartError(Exception):
    """A worker could not import the handler (or died, or took too long, trying)."""

    def __init__(self, error: dict[str, Any], traceback: str | None = None) -> None:
        super().__init__(error.get("message", "worker failed to start"))
        self.error = error
        self.traceback = traceback


class InvocationTimeout(Exception):
    """The invocation ran past its timeout; its worker has been killed."""


class WorkerCrashed(Exception):
    """The worker died during the invocation."""


class PoolClosed(Exception):
    """The pool is shutting down and takes no more invocations."""


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Worker:
    """One worker process, seen from the server."""

    def __init__(self, log: LogWriter) -> None:
        self._log = log
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._killed = False
        self._timed_out = False
        self._kill_lock = threading.Lock()
        # The invocation running now, for output that bypasses the worker's sys.stdout.
        self.current: str | None = None
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kumo_runtime", "--worker", str(request_read), str(result_write)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(request_read, result_write),
                # Its own process group: a timeout kills the handler's children too,
                # and a Ctrl-C meant for the server does not reach the handler.
                start_new_session=True,
            )
        except BaseException:
            os.close(request_write)
            os.close(result_read)
            raise
        finally:
            os.close(request_read)
            os.close(result_write)
        self.pid = self.process.pid
        self._requests = os.fdopen(request_write, "wb")
        assert self.process.stdout is not None and self.process.stderr is not None
        for target, args in (
            (self._read_messages, (result_read,)),
            (self._read_output, (self.process.stdout, "stdout")),
            (self._read_output, (self.process.stderr, "stderr")),
        ):
            threading.Thread(target=target, args=args, name=f"kumo-worker-{self.pid}", daemon=True).start()

    @property
    def usable(self) -> bool:
        return not self._killed and self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        """Waits until the worker has imported the handler. Raises :class:`WorkerStartError`."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise WorkerStartError(
                {"type": "InitTimeout", "message": f"importing the handler took longer than {timeout:g}s"}
            ) from None
        if message.get("type") == "ready":
            return
        if message.get("type") == "failed":
            self.kill()
            raise WorkerStartError(message.get("error") or {}, message.get("traceback"))
        self.kill()
        raise WorkerStartError(
            {"type": "WorkerCrashed", "message": f"the worker {_describe_exit(self.process.returncode)} before it was ready"}
        )

    def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Runs one invocation and returns the worker's result message.

        Raises :class:`InvocationTimeout` (the worker is then killed) or :class:`WorkerCrashed`.
        """
        self.current = request["id"]
        # The timer covers everything, even a write that blocks because the worker is wedged.
        timer = threading.Timer(timeout, self._expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                self._requests.write((json.dumps(request, ensure_ascii=False) + "\n").encode("utf-8"))
                self._requests.flush()
            except (OSError, ValueError):
                pass  # the worker is gone: the result reader reports how
            try:
                message = self._messages.get(timeout=timeout + _KILL_BACKSTOP_SECONDS)
            except queue.Empty:
                # Killed, yet the pipe stays open (a grandchild holds it): stop waiting.
                self._expire()
                message = {"type": "exit"}
        finally:
            timer.cancel()
            self.current = None
        if message.get("type") == "result" and message.get("id") == request["id"]:
            return message
        if self._timed_out:
            raise InvocationTimeout()
        self.kill()
        raise WorkerCrashed(f"the worker running the handler {_describe_exit(self.process.returncode)}")

    def _expire(self) -> None:
        self._timed_out = True
        self.kill()

    def kill(self) -> None:
        """Kills the worker and everything it started, and reaps it. Idempotent."""
        with self._kill_lock:
            self._killed = True
            if self.process.returncode is None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.process.wait()
        self._close_requests()

    def stop(self) -> None:
        """Asks the worker to finish (end of its request pipe), then kills it if it lingers."""
        self._close_requests()
        try:
            self.process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _close_requests(self) -> None:
        try:
            self._requests.close()
        except OSError:
            pass

    def _read_messages(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as results:
            for line in results:
                try:
                    message = json.loads(line)
                except ValueError:
                    self._log.error("worker.protocol", worker=self.pid, line=line[:200].decode("utf-8", "replace"))
                    continue
                if message.get("type") == "log":
                    record = dict(message.get("record") or {})
                    level = str(record.pop("level", "info"))
                    msg = str(record.pop("msg", ""))
                    ts = record.pop("ts", None)
                    for reserved in ("function", "revision"):
                        record.pop(reserved, None)
                    invocation_id = record.pop("invocationId", None)
                    self._log.emit(level, msg, ts=ts, invocationId=invocation_id, **record)
                else:
                    self._messages.put(message)
        self._messages.put({"type": "exit"})

    def _read_output(self, pipe: IO[bytes], stream: str) -> None:
        # Output written straight to file descriptors 1 and 2; tagged with the
        # invocation running when it arrives (best effort, by nature).
        level = "info" if stream == "stdout" else "error"
        with pipe:
            for raw in iter(lambda: pipe.readline(64 * 1024), b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.strip():
                    self._log.emit(level, line, stream=stream, invocationId=self.current)


class _Ticket:
    """A place in the queue for a worker: handed a worker, or the right to start one."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.worker: Worker | None = None
        self.may_start = False


class Pool:
    """At most ``limit`` workers (``None``: no limit), handed out first come, first served."""

    def __init__(self, log: LogWriter, limit: int | None, init_timeout: float, keep_idle: int) -> None:
        self._log = log
        self._limit = limit
        self._init_timeout = init_timeout
        self._keep_idle = max(1, keep_idle)
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._waiting: deque[_Ticket] = deque()
        self._workers: set[Worker] = set()
        # Workers alive or being started: what the limit counts.
        self._count = 0
        self._closed = False

    def acquire(self) -> Worker:
        """A ready worker for one invocation; waits in line when all are busy.

        Raises :class:`PoolClosed` or :class:`WorkerStartError`.
        """
        while True:
            ticket: _Ticket | None = None
            worker: Worker | None = None
            start = False
            with self._lock:
                if self._closed:
                    raise PoolClosed()
                if self._idle and not self._waiting:
                    worker = self._idle.pop()
                elif not self._waiting and (self._limit is None or self._count < self._limit):
                    self._count += 1
                    start = True
                else:
                    ticket = _Ticket()
                    self._waiting.append(ticket)
            if ticket is not None:
                ticket.ready.wait()
                worker, start = ticket.worker, ticket.may_start
                if worker is None and not start:
                    raise PoolClosed()
            if start:
                return self._start()
            assert worker is not None
            if worker.usable:
                return worker
            # Died while idle (killed from outside, or a thread it left behind ended it).
            self.discard(worker)

    def release(self, worker: Worker) -> None:
        """Gives back a worker after a normal invocation."""
        if not worker.usable:
            self.discard(worker)
            return
        retire = False
        with self._lock:
            if self._closed or (not self._waiting and len(self._idle) >= self._keep_idle):
                retire = True
                self._count -= 1
                self._workers.discard(worker)
            elif self._waiting:
                ticket = self._waiting.popleft()
                ticket.worker = worker
                ticket.ready.set()
            else:
                self._idle.append(worker)
        if retire:
            # In the background: the caller's answer need not wait for a spare worker to exit.
            threading.Thread(target=worker.stop, name="kumo-retire", daemon=True).start()

    def discard(self, worker: Worker, *, replace: bool = True) -> None:
        """Kills a worker (timed out, crashed) and frees its place; ``replace`` warms up another."""
        worker.kill()
        with self._lock:
            self._workers.discard(worker)
        self._free_place(warm=replace)

    def warm_up(self) -> None:
        """Starts the first worker, so start-up fails when the handler cannot be imported."""
        self.release(self.acquire())

    def close(self) -> None:
        """Takes no more invocations, wakes those waiting, and stops every worker."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
            workers = list(self._workers)
            self._idle.clear()
        for ticket in waiting:
            ticket.ready.set()
        threads = [threading.Thread(target=worker.stop, daemon=True) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _start(self) -> Worker:
        # The caller holds a place (counted); it is freed if the start fails.
        started = time.monotonic()
        try:
            worker = Worker(self._log)
        except BaseException as exc:
            self._free_place(warm=False)
            raise WorkerStartError({"type": "WorkerStartFailed", "message": f"cannot start a worker: {exc}"}) from exc
        with self._lock:
            self._workers.add(worker)
        try:
            worker.wait_ready(self._init_timeout)
        except BaseException:
            with self._lock:
                self._workers.discard(worker)
            worker.kill()
            self._free_place(warm=False)
            raise
        self._log.info("worker.started", worker=worker.pid, initMs=round((time.monotonic() - started) * 1000, 3))
        return worker

    def _free_place(self, *, warm: bool) -> None:
        """One worker fewer: the next in line may start one, or one is warmed up for the next call."""
        start_in_background = False
        with self._lock:
            self._count -= 1
            if self._closed:
                return
            if self._waiting:
                self._count += 1
                ticket = self._waiting.popleft()
                ticket.may_start = True
                ticket.ready.set()
            elif warm and self._count == 0:
                self._count += 1
                start_in_background = True
        if start_in_background:
            threading.Thread(target=self._warm, name="kumo-warm", daemon=True).start()

    def _warm(self) -> None:
        try:
            worker = self._start()
        except WorkerStartError as exc:
            self._log.error("worker.start_failed", error=exc.error, traceback=exc.traceback)
            return
        self.release(worker)


def make_pool(log: LogWriter, concurrency: int, init_timeout: float) -> Pool:
    """The pool for ``KUMO_CONCURRENCY``: that many workers at most, or as many as needed for 0."""
    if concurrency > 0:
        return Pool(log, limit=concurrency, init_timeout=init_timeout, keep_idle=concurrency)
    return Pool(log, limit=None, init_timeout=init_timeout, keep_idle=os.cpu_count() or 1)

