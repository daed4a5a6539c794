"""Cross-cutting HTTP concerns: OpenAI-shaped errors, CORS, and response hardening."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import GatewayError, InvalidRequest, PermissionDenied, RateLimited, Unavailable
from gateway.server.state import STATE

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What OpenAI's own browser clients send on a call (protocol.md §5).
CORS_ALLOW_HEADERS = "Authorization, Content-Type, X-OpenAI-Agents-SDK, OpenAI-Safety-Identifier"
CORS_ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_MAX_AGE = "600"


def error_response(error: GatewayError) -> web.Response:
    response = web.json_response(error.to_body(), status=error.status)
    if isinstance(error, RateLimited | Unavailable):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


_HTTP_CODES = {
    404: ("not_found", "Unknown URL: {method} {path}."),
    405: ("method_not_allowed", "{method} is not allowed on {path}."),
    413: ("payload_too_large", "The request body is too large."),
    417: ("expectation_failed", "Only 'Expect: 100-continue' is supported."),
}


def http_error(request: web.BaseRequest, status: int, reason: str) -> GatewayError:
    """The OpenAI-shaped error for an HTTP status aiohttp decided (404, 405, 413, 417…)."""
    code, template = _HTTP_CODES.get(status, ("http_error", "{reason}."))
    message = template.format(method=request.method, path=request.path, reason=reason)
    error = GatewayError(message, code=code, status=status)
    error.type = "invalid_request_error" if status < 500 else "server_error"
    return error


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error": {message, type, code, param}}``; never a traceback."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return error_response(exc)
    except RecursionError:
        return error_response(
            InvalidRequest("The request is nested too deeply.", code="invalid_json")
        )
    except (HttpProcessingError, RequestPayloadError):
        # aiohttp could not decode the body (bad gzip/deflate, broken multipart or chunking).
        return error_response(
            InvalidRequest(
                "The request body is malformed and could not be read.", code="invalid_body"
            )
        )
    except ConnectionError:
        # The client went away mid-request; nobody will read an answer, and it is not our fault.
        log.info("http.client_disconnected", method=request.method, path=request.path)
        return error_response(
            InvalidRequest("The client closed the connection.", code="client_disconnected")
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(http_error(request, exc.status, exc.reason))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("http.unhandled_error", method=request.method, path=request.path)
        return error_response(
            GatewayError(
                "The gateway had an internal error; it has been logged.", code="internal_error"
            )
        )


def cors_middleware(origins: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    allow_any = "*" in origins

    def allowed(origin: str) -> bool:
        return allow_any or origin.rstrip("/") in origins

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        if not allowed(origin):
            return error_response(
                PermissionDenied(
                    f"Origin {origin!r} is not allowed by this gateway (GATEWAY_CORS_ORIGINS).",
                    code="origin_not_allowed",
                )
            )
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", CORS_ALLOW_HEADERS
            )
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*" if allow_any else origin
        response.headers["Access-Control-Expose-Headers"] = "Location"
        if not allow_any:
            response.headers.add("Vary", "Origin")
        return response

    return middleware


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route template (bounded) and final status."""
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    request.app[STATE].metrics.http_request(route, response.status)
    return response


# The page loads only its own files and talks only to this origin; no inline script or style.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    harden(request, response)
    return response


def harden(request: web.BaseRequest, response: web.StreamResponse) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if request.path == "/" or request.path.startswith("/static/"):
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("Permissions-Policy", "microphone=(self), camera=(), geolocation=()")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cache-Control", "no-cache")
    else:
        headers.setdefault("Cache-Control", "no-store")


async def shape_bare_errors(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``on_response_prepare``: give the errors aiohttp renders itself the OpenAI shape too.

    aiohttp answers a few requests before the middleware chain runs, as plain text without the
    hardening headers; the one a client can provoke is an ``Expect`` other than
    ``100-continue`` (417, tests/fuzz/FINDINGS.md F5).
    """
    if (
        response.status < 400
        or not isinstance(response, web.Response)
        or response.content_type == "application/json"
    ):
        return
    error = http_error(request, response.status, response.reason)
    body = json.dumps(error.to_body()).encode()
    response.body = body
    # The hook runs after aiohttp has counted the old body, just before the headers go out.
    response.headers["Content-Length"] = str(len(body))
    response.content_type = "application/json"
    harden(request, response)
