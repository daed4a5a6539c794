"""A web app on its own origin that uses the gateway, as a customer's app would.

It serves the test pages (``pages/``) and the bundled SDK, and its backend mints client secrets
from the gateway with the gateway key, server to server, so the key never reaches the browser:

- ``GET|POST /token``: GA, ``POST /v1/realtime/client_secrets`` → ``{"value": "ek_…", …}``;
- ``GET|POST /session``: beta, ``POST /v1/realtime/sessions`` → ``{"client_secret": {…}}``.

Pages read the gateway's URL from their ``?gateway=`` query parameter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.browser.sdk_bundle import BUNDLE

PAGES = Path(__file__).resolve().parent / "pages"
HTTP = web.AppKey("http", aiohttp.ClientSession)

GA_SECRET_REQUEST = {
    "expires_after": {"anchor": "created_at", "seconds": 600},
    "session": {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "You are a helpful assistant.",
        "audio": {"output": {"voice": "marin"}},
    },
}
BETA_SESSION_REQUEST = {"model": "gpt-4o-realtime-preview-2024-12-17", "voice": "verse"}


def make_app(gateway_url: Callable[[], str], gateway_key: str) -> web.Application:
    async def forward(path: str, body: dict[str, Any], request: web.Request) -> web.Response:
        async with request.app[HTTP].post(
            gateway_url() + path,
            json=body,
            headers={"Authorization": f"Bearer {gateway_key}"},
        ) as upstream:
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type="application/json",
            )

    async def token(request: web.Request) -> web.Response:
        return await forward("/v1/realtime/client_secrets", GA_SECRET_REQUEST, request)

    async def session(request: web.Request) -> web.Response:
        return await forward("/v1/realtime/sessions", BETA_SESSION_REQUEST, request)

    async def bundle(request: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE, headers={"Content-Type": "text/javascript"})

    async def http_client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as http:
            app[HTTP] = http
            yield

    app = web.Application()
    app.cleanup_ctx.append(http_client)
    for path, handler in (("/token", token), ("/session", session)):
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
    app.router.add_get("/sdk/agents-realtime.js", bundle)
    app.router.add_static("/pages/", PAGES)
    return app
