"""Structured logging: static event names, fields for the details, secrets redacted.

``configure()`` is called once by the entry point; library code only calls
``structlog.get_logger(__name__)``. Lines are JSON when stderr is not a terminal (containers,
journald) and coloured key/value when it is.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import structlog

# Anything shaped like a key or token is masked, whatever field it hides in: OpenAI keys (sk-…),
# our client secrets (ek_…) and gateway keys (gk_…).
_TOKEN_RE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,}|ek_[A-Za-z0-9_\-]{6,}|gk_[A-Za-z0-9_\-]{6,})")
_SENSITIVE_KEYS = frozenset({"authorization", "api_key", "openai_api_key", "gateway_api_key"})
REDACTED = "[redacted]"


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TOKEN_RE.sub(REDACTED, text)


class Redactor:
    """A structlog processor that masks secrets in every string field, recursively."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact_text(value, self._secrets)
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in _SENSITIVE_KEYS else self._clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key.lower() in _SENSITIVE_KEYS:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._clean(event_dict[key])
        return event_dict


class _StaticFields:
    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields = dict(fields)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in self._fields.items():
            event_dict.setdefault(key, value)
        return event_dict


class RedactingFilter(logging.Filter):
    """Masks secrets in stdlib log records (aiohttp quotes a refused request line back in its
    log, Authorization header included), message and traceback alike."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage(), self._secrets)
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text, self._secrets)
            record.exc_info = None
        return True


def configure(
    level: str = "info",
    fmt: str = "auto",
    secrets: Iterable[str] = (),
    fields: Mapping[str, str] | None = None,
) -> None:
    """Set up structlog (and stdlib logging for aiortc/aiohttp) once, at startup. ``fields``
    go on every line (``node``: which process of a gateway wrote it)."""
    numeric = logging.getLevelName(level.upper())
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _StaticFields(fields or {}),
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            Redactor(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aiortc/aioice/aiohttp log through stdlib; keep them quiet unless debugging.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if numeric > logging.DEBUG else logging.DEBUG)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
