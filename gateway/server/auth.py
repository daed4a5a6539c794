"""Who is calling: the app's backend (gateway key) or a browser (a client secret)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from aiohttp import web

from gateway.client_secrets import TOKEN_PREFIX
from gateway.errors import AuthenticationError
from gateway.server.state import GatewayState


@dataclass(frozen=True)
class Caller:
    token: str
    is_server: bool  # holds the gateway key


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError(
            "You didn't provide an API key. Provide it in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    return token


def is_gateway_key(state: GatewayState, token: str) -> bool:
    key = state.settings.gateway_api_key
    return key is not None and secrets.compare_digest(
        token.encode("utf-8", "surrogatepass"), key.reveal().encode("utf-8", "surrogatepass")
    )


def identify(request: web.Request, state: GatewayState) -> Caller:
    token = bearer(request)
    if is_gateway_key(state, token):
        return Caller(token=token, is_server=True)
    if token.startswith(TOKEN_PREFIX):
        return Caller(token=token, is_server=False)
    raise AuthenticationError(
        "Incorrect API key provided. Use the gateway key (GATEWAY_API_KEY) from your backend, "
        "or a client secret (ek_…) minted with POST /v1/realtime/client_secrets from a browser.",
        code="invalid_api_key",
    )


def require_server(request: web.Request, state: GatewayState) -> None:
    if state.settings.gateway_api_key is None:
        raise AuthenticationError(
            "This gateway has no GATEWAY_API_KEY configured, so it mints no client secrets.",
            code="gateway_key_not_configured",
        )
    caller = identify(request, state)
    if not caller.is_server:
        raise AuthenticationError(
            "This endpoint needs the gateway key (GATEWAY_API_KEY), not a client secret.",
            code="invalid_api_key",
        )
