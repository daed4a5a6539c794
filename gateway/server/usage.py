"""``GET /v1/gateway/usage``: what each app, model and end user spent, for the operator.

Only the operator's key (``GATEWAY_API_KEY``) reads it; an app's key gets 403, so one app never
learns another's spend. ``start`` and ``end`` are Unix times (default: the UTC month so far);
the report sums whole UTC days, at most 400 of them.
"""

from __future__ import annotations

import calendar
import time

from aiohttp import web

from gateway.config.apps import DEFAULT_APP
from gateway.errors import InvalidRequest, PermissionDenied
from gateway.server.auth import require_server
from gateway.server.state import STATE, GatewayState

PATH = "/v1/gateway/usage"


def _time(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1e11:
        raise InvalidRequest(
            f"Invalid value for '{name}': expected a Unix time in seconds.",
            code="invalid_value",
            param=name,
        )
    return value


async def usage(request: web.Request) -> web.Response:
    state: GatewayState = request.app[STATE]
    app = require_server(request, state)
    if app.name != DEFAULT_APP:
        raise PermissionDenied("Usage is read with the operator's key (GATEWAY_API_KEY).")
    now = time.time()
    month = time.gmtime(now)
    month_start = float(calendar.timegm((month.tm_year, month.tm_mon, 1, 0, 0, 0)))
    start = _time(request, "start", month_start)
    end = _time(request, "end", now)
    rows = await state.stores.spend.usage(start, end)
    return web.json_response(
        {
            "object": "list",
            "start": int(start),
            "end": int(end),
            "total_usd": round(sum(r.usd for r in rows), 6),
            "data": [
                {
                    "object": "gateway.usage",
                    "app": r.app,
                    "model": r.model,
                    "user": r.user or None,
                    "cost_usd": round(r.usd, 6),
                    "tokens": r.tokens,
                }
                for r in rows
            ],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, usage)
