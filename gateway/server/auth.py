"""Who is calling: an app's backend (its gateway key) or a browser (a client secret)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.client_secrets import TOKEN_PREFIX
from gateway.config.apps import DEFAULT_APP, App
from gateway.errors import AuthenticationError
from gateway.server.state import GatewayState


@dataclass(frozen=True)
class Caller:
    token: str
    app: App | None
    """The app whose gateway key ``token`` is; ``None``: a client secret (its app is the one
    that minted it)."""

    @property
    def is_server(self) -> bool:
        """Holds a gateway key."""
        return self.app is not None


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


def identify(request: web.Request, state: GatewayState) -> Caller:
    token = bearer(request)
    app = state.apps.authenticate(token)
    if app is not None:
        return Caller(token=token, app=app)
    if token.startswith(TOKEN_PREFIX):
        return Caller(token=token, app=None)
    raise AuthenticationError(
        "Incorrect API key provided. Use the gateway key (GATEWAY_API_KEY, or your app's key "
        "in GATEWAY_APPS) from your backend, or a client secret (ek_…) minted with "
        "POST /v1/realtime/client_secrets from a browser.",
        code="invalid_api_key",
    )


def require_server(request: web.Request, state: GatewayState) -> App:
    """The app whose gateway key the request holds; 401 for anything else."""
    if len(state.apps) == 0:
        raise AuthenticationError(
            "This gateway has no GATEWAY_API_KEY or GATEWAY_APPS configured, so it mints no "
            "client secrets.",
            code="gateway_key_not_configured",
        )
    caller = identify(request, state)
    if caller.app is None:
        raise AuthenticationError(
            "This endpoint needs a gateway key (GATEWAY_API_KEY, or an app's key), not a "
            "client secret.",
            code="invalid_api_key",
        )
    return caller.app


def sees(app: App, call_app: str) -> bool:
    """Whether ``app``'s key may see and manage a call of ``call_app``: an app its own calls;
    the single key (``GATEWAY_API_KEY``, the operator's) every app's."""
    return app.name == DEFAULT_APP or app.name == call_app
