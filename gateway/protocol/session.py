"""Session configuration: defaults, merging, and the ``client_secrets`` request body.

Pure: no I/O. Shapes follow OpenAI's GA interface (``../shared/protocol.md`` §2, §4.3).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidRequest
from gateway.protocol.events import MAX_NESTING, nesting, too_deep
from gateway.protocol.paths import MISSING, get_path

SESSION_TYPES = ("realtime", "transcription")
MIN_TTL, MAX_TTL = 10, 7200


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested objects merge, everything else (lists included) is replaced."""
    out: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def without_locked(
    override: Mapping[str, Any],
    locked: tuple[str, ...],
    server_session: Mapping[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """``override`` without the locked fields (dotted paths) that ``server_session`` sets, and
    the paths removed. A browser's session choices at call setup (the beta URL's ``?model=``, a
    multipart ``session``) are held to the locks its ``session.update`` events are held to."""
    out = copy.deepcopy(dict(override))
    removed: list[str] = []
    for dotted in locked:
        path = tuple(dotted.split("."))
        if get_path(server_session, path) is MISSING or get_path(out, path) is MISSING:
            continue
        parent: Any = out
        for key in path[:-1]:
            parent = parent[key]
        del parent[path[-1]]
        removed.append(dotted)
    return out, removed


def default_session(model: str, voice: str, instructions: str | None) -> dict[str, Any]:
    """The server's session defaults, sent upstream unless a token or request overrides them."""
    session: dict[str, Any] = {
        "type": "realtime",
        "model": model,
        "audio": {"output": {"voice": voice}},
    }
    if instructions:
        session["instructions"] = instructions
    return session


def resolve_session(
    model: str,
    voice: str,
    instructions: str | None,
    defaults: Mapping[str, Any] | None,
    *overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The session a call gets: the server's defaults, ``defaults`` (``GATEWAY_SESSION``) over
    them, then each override in turn (later ones win)."""
    session = default_session(model, voice, instructions)
    if defaults:
        session = deep_merge(session, defaults)
    for override in overrides:
        if override:
            session = deep_merge(session, override)
    return session


def with_server_tools(session: Mapping[str, Any], server: list[dict[str, Any]]) -> dict[str, Any]:
    """``session`` with the server's tools added; they replace same-named tools it lists (the
    server is authoritative)."""
    out = dict(session)
    if server:
        names = {t["name"] for t in server}
        requested = out.get("tools")
        requested = requested if isinstance(requested, list) else []
        kept = [t for t in requested if not (isinstance(t, dict) and t.get("name") in names)]
        out["tools"] = kept + server
    return out


def check_session(session: Any, *, param: str = "session") -> dict[str, Any]:
    """Validate the little we must know of a session object; the upstream validates the rest."""
    if session is None:
        return {"type": "realtime"}
    if not isinstance(session, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param, code="invalid_type")
    if nesting(session) > MAX_NESTING:
        raise too_deep(f"'{param}' object", param)
    kind = session.get("type", "realtime")
    if kind not in SESSION_TYPES:
        raise InvalidRequest(
            f"Invalid value for '{param}.type': expected one of {', '.join(SESSION_TYPES)}, "
            f"got {kind!r}.",
            param=f"{param}.type",
            code="invalid_value",
        )
    return {**session, "type": kind}


def parse_expires_after(body: dict[str, Any], default_ttl: int) -> int:
    """The secret's lifetime in seconds from a client-secret body's ``expires_after``."""
    expires_after = body.get("expires_after")
    if expires_after is None:
        return default_ttl
    if not isinstance(expires_after, dict):
        raise InvalidRequest(
            "'expires_after' must be an object.", param="expires_after", code="invalid_type"
        )
    anchor = expires_after.get("anchor", "created_at")
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value for 'expires_after.anchor': expected 'created_at', got {anchor!r}.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    seconds = expires_after.get("seconds", default_ttl)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        raise InvalidRequest(
            "'expires_after.seconds' must be an integer.",
            param="expires_after.seconds",
            code="invalid_type",
        )
    if not MIN_TTL <= seconds <= MAX_TTL:
        raise InvalidRequest(
            f"'expires_after.seconds' must be between {MIN_TTL} and {MAX_TTL}, got {seconds}.",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return seconds


def parse_client_secret_request(body: Any, default_ttl: int) -> tuple[int, dict[str, Any]]:
    """``POST /v1/realtime/client_secrets`` body → (ttl seconds, requested session)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return parse_expires_after(body, default_ttl), check_session(body.get("session"))
