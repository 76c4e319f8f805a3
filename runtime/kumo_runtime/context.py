"""The ``context`` a handler receives with each event."""

from __future__ import annotations

import logging
import time
from typing import Any


class Context:
    """What the runtime knows about one invocation.

    Attributes:
        invocation_id: a UUID the runtime gives this invocation; it is also in the
            response body and on every log line the invocation produces.
        function: the function's name (``KUMO_FUNCTION``).
        revision: the revision serving it (``K_REVISION``), or ``None``.
        deadline: when the invocation is cut off, in seconds since the epoch.
        cloudevent: the CloudEvent attributes (``id``, ``source``, ``type``,
            ``subject``, ``time``, ``specversion``, extensions) or ``None`` when the
            request was not a CloudEvent.
        request_id: the request's ``X-Request-Id`` header, or ``None``.
        logger: a :class:`logging.Logger` whose records become structured log lines
            carrying the invocation id.

    Example::

        def handle(event, context):
            context.logger.info("resizing %s", event["key"])
            if context.remaining_seconds() < 1:
                return {"skipped": True}
            ...
    """

    __slots__ = ("invocation_id", "function", "revision", "deadline", "cloudevent", "request_id", "logger")

    def __init__(
        self,
        invocation_id: str,
        function: str,
        revision: str | None,
        deadline: float,
        cloudevent: dict[str, Any] | None,
        request_id: str | None,
        logger: logging.Logger,
    ) -> None:
        self.invocation_id = invocation_id
        self.function = function
        self.revision = revision
        self.deadline = deadline
        self.cloudevent = cloudevent
        self.request_id = request_id
        self.logger = logger

    def remaining_seconds(self) -> float:
        """Seconds left before the invocation is cut off (never negative)."""
        return max(0.0, self.deadline - time.time())

    def __repr__(self) -> str:
        return (
            f"Context(invocation_id={self.invocation_id!r}, function={self.function!r}, "
            f"revision={self.revision!r}, remaining_seconds={self.remaining_seconds():.3f})"
        )
