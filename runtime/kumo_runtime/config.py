"""The runtime's settings, read once from the environment.

Every path is taken as given and resolved against the working directory, so the
same image runs from ``/opt/kumo`` in a container and from an unpacked copy on a
developer's machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

# The same shape the API accepts for a function's handler: module path, then the function.
HANDLER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.[A-Za-z_][A-Za-z0-9_]*$")

LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """An environment variable is missing or has a value the runtime cannot use."""


@dataclass(frozen=True)
class Config:
    """What the runtime serves, where, and within which limits."""

    handler: str
    code_dir: str
    port: int
    host: str
    function: str
    revision: str | None
    timeout_seconds: float
    init_timeout_seconds: float
    concurrency: int
    log_level: str

    @property
    def module_name(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def function_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def timeout_label(self) -> str:
        """The timeout as people write it: ``2s``, ``1.5s``."""
        value = self.timeout_seconds
        return f"{int(value)}s" if value == int(value) else f"{value:g}s"


def _get(env: Mapping[str, str], name: str) -> str | None:
    # An empty value counts as unset: `FOO=` in an env file means "no FOO".
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Reads the settings from ``env`` (the process environment by default).

    Raises :class:`ConfigError` naming the variable at fault.
    """
    env = os.environ if env is None else env
    handler = _get(env, "KUMO_HANDLER")
    if handler is None:
        raise ConfigError("KUMO_HANDLER is required: module.function, e.g. handler.handle")
    if not HANDLER_PATTERN.match(handler):
        raise ConfigError(f"KUMO_HANDLER must be module.function, e.g. handler.handle, got {handler!r}")

    log_level = (_get(env, "KUMO_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"KUMO_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    return Config(
        handler=handler,
        code_dir=_get(env, "KUMO_CODE_DIR") or "code",
        port=_int(env, "PORT", 8080, 0, 65535),
        host=_get(env, "KUMO_LISTEN_HOST") or "127.0.0.1",
        function=_get(env, "KUMO_FUNCTION") or "function",
        revision=_get(env, "K_REVISION"),
        timeout_seconds=_seconds(env, "KUMO_TIMEOUT_SECONDS", 30.0),
        init_timeout_seconds=_seconds(env, "KUMO_INIT_TIMEOUT_SECONDS", 60.0),
        concurrency=_int(env, "KUMO_CONCURRENCY", 0, 0, 10_000),
        log_level=log_level,
    )
