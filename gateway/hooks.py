"""User hooks: code of the operator's that sees, changes or drops a call's events.

``GATEWAY_HOOKS=package.module:object`` names an object with any of ``on_session_start(info)``,
``on_client_event(info, event)``, ``on_server_event(info, event)``,
``on_session_end(info, summary)`` and ``should_record(info)``, each sync or async. A class is
instantiated with no arguments; an instance or a module is used as it is.

A hook can never end a call or stall the relay: one that raises, times out or returns something
that is not an event is logged and skipped, and the event goes on unchanged. Event hooks get a
copy of the event, so a hook that edits it in place and then fails changes nothing. Async hooks
run on the event loop; sync hooks run in a worker thread (``asyncio.to_thread``), so a blocking
one (a database write, an HTTP call) holds up only the event it is looking at.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.config import ConfigError
from gateway.config.apps import DEFAULT_APP
from gateway.types import Event

log = structlog.get_logger(__name__)


HOOK_NAMES: Final = (
    "on_session_start",
    "on_client_event",
    "on_server_event",
    "on_session_end",
    "should_record",
)
DEFAULT_TIMEOUT: Final = 5.0

_FAILED: Final = object()


@dataclass(frozen=True)
class CallInfo:
    """What hooks learn about a call: no secrets, no tokens."""

    call_id: str
    upstream_call_id: str | None
    dialect: str
    session: Mapping[str, Any]
    started_at: float
    """Unix time (``time.time()``)."""
    app: str = DEFAULT_APP
    """The app the call is for (whose gateway key opened it, or minted its client secret)."""


@dataclass(frozen=True)
class CallSummary:
    reason: str
    outcome: str
    duration_s: float
    client_events: int
    server_events: int
    tokens: Mapping[str, int]
    """Tokens per billing kind (``gateway.metrics.TOKEN_KINDS``), summed over the call."""
    tool_calls: int
    cost_usd: float | None = None
    """US dollars, usage x the price table (``None``: the call's model has no price)."""


class Hooks:
    """User hooks from ``GATEWAY_HOOKS=module:object``.

    Each method is optional on the object, sync or async. A hook that raises is logged
    (``hook.failed``) and skipped — the call goes on and the event passes unchanged; so does one
    that outlives ``timeout`` seconds (``hook.timeout``) or returns neither ``None`` nor a dict
    with a string ``type`` that encodes as JSON (``hook.bad_return``).
    """

    def __init__(self, target: object | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"'timeout' must be positive (got {timeout})")
        self.timeout = timeout
        self._hooks: dict[str, Callable[..., Any]] = {}
        for name in HOOK_NAMES:
            hook = getattr(target, name, None) if target is not None else None
            if hook is None:
                continue
            if not callable(hook):
                raise TypeError(f"{name} must be callable (got {type(hook).__name__})")
            self._hooks[name] = hook

    def __repr__(self) -> str:
        return f"Hooks({sorted(self._hooks)})"

    @property
    def active(self) -> bool:
        return bool(self._hooks)

    @property
    def wants_client_events(self) -> bool:
        return "on_client_event" in self._hooks

    @property
    def wants_server_events(self) -> bool:
        return "on_server_event" in self._hooks

    async def session_start(self, info: CallInfo) -> None:
        await self._call("on_session_start", info, (info,))

    async def session_end(self, info: CallInfo, summary: CallSummary) -> None:
        await self._call("on_session_end", info, (info, summary))

    async def should_record(self, info: CallInfo) -> bool:
        """Whether to keep this call's recording (when recording is on): ``True`` without the
        hook. A hook that fails, times out or answers anything but a bool means no: a call
        is recorded only when the operator's rule said so."""
        if "should_record" not in self._hooks:
            return True
        result = await self._call("should_record", info, (info,))
        if isinstance(result, bool):
            return result
        if result is not _FAILED:
            log.warning(
                "hook.bad_return",
                hook="should_record",
                call_id=info.call_id,
                returned=type(result).__name__,
            )
        return False

    async def client_event(self, info: CallInfo, event: Event) -> Event | None:
        """The event to forward (maybe changed), or ``None`` to drop it."""
        return await self._event("on_client_event", info, event)

    async def server_event(self, info: CallInfo, event: Event) -> Event | None:
        """The event to forward (maybe changed), or ``None`` to drop it."""
        return await self._event("on_server_event", info, event)

    async def _event(self, name: str, info: CallInfo, event: Event) -> Event | None:
        if name not in self._hooks:
            return event
        result = await self._call(
            name, info, (info, _copy_json(event)), event_type=event.get("type")
        )
        if result is _FAILED:
            return event
        if result is None:
            return None
        if _is_event(result):
            return result  # type: ignore[no-any-return]
        log.warning(
            "hook.bad_return",
            hook=name,
            call_id=info.call_id,
            event_type=event.get("type"),
            returned=type(result).__name__,
        )
        return event

    async def _call(
        self, name: str, info: CallInfo, args: tuple[Any, ...], *, event_type: Any = None
    ) -> Any:
        """Run one hook under the timeout; :data:`_FAILED` if it raised or timed out."""
        hook = self._hooks.get(name)
        if hook is None:
            return None
        fields: dict[str, Any] = {"hook": name, "call_id": info.call_id}
        if event_type is not None:
            fields["event_type"] = event_type
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                if _is_async(hook):
                    return await hook(*args)
                result = await asyncio.to_thread(hook, *args)
                if inspect.isawaitable(result):
                    # A sync callable that hands back an awaitable (a lambda around a coroutine).
                    return await result
                return result
        except TimeoutError:
            if not deadline.expired():
                log.error("hook.failed", **fields, exc_info=True)
            else:
                log.warning("hook.timeout", **fields, timeout=self.timeout)
        except Exception:
            log.error("hook.failed", **fields, exc_info=True)
        return _FAILED


def load_hooks(spec: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> Hooks:
    """``GATEWAY_HOOKS`` (``pkg.mod:obj``, ``pkg.mod:obj.attr`` or ``pkg.mod``) → :class:`Hooks`.

    Unset or blank gives inactive hooks. Anything that keeps the hooks from loading raises
    :class:`ConfigError` naming ``GATEWAY_HOOKS`` and the cause, so startup stops.
    """
    if spec is None or not spec.strip():
        return Hooks(timeout=timeout)
    module_name, _, attr = spec.strip().partition(":")
    if not module_name or (":" in spec and not attr):
        raise ConfigError(f"GATEWAY_HOOKS must look like 'package.module:object' (got {spec!r})")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"GATEWAY_HOOKS: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split(".") if attr else ():
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"GATEWAY_HOOKS: {module_name!r} has no attribute {attr!r}") from None
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as exc:
            raise ConfigError(
                f"GATEWAY_HOOKS: cannot instantiate {spec.strip()!r} with no arguments: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    try:
        hooks = Hooks(target, timeout=timeout)
    except TypeError as exc:
        raise ConfigError(f"GATEWAY_HOOKS: {spec.strip()!r}: {exc}") from None
    if not hooks.active:
        raise ConfigError(
            f"GATEWAY_HOOKS: {spec.strip()!r} defines none of {', '.join(HOOK_NAMES)}"
        )
    return hooks


def _is_async(hook: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        type(hook).__call__  # an object with an async __call__
    )


def _is_event(value: Any) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return False
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _copy_json(value: Any) -> Any:
    """A deep copy of a JSON value; much cheaper than ``copy.deepcopy`` for event-sized data."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value
