"""The gateway's one error tree.

Every error the gateway raises on purpose is a :class:`GatewayError`. The web layer turns one
into an OpenAI-shaped HTTP error (``{"error": {"message", "type", "code", "param"}}`` with
``status``); the relay turns one into an ``error`` event on the data channel. Foreign exceptions
(aiohttp, aiortc, json) are translated once, where they enter, with ``raise ... from exc`` — or
``from None`` when the cause could carry a secret (an upstream response, a request header).

::

    GatewayError                     500 server_error
     ├── InvalidRequest              400 invalid_request_error
     │    ├── InvalidOffer           400 code=invalid_offer
     │    ├── PayloadTooLarge        413 code=payload_too_large
     │    └── UnsupportedMediaType   415 code=unsupported_content_type
     ├── AuthenticationError         401 code=invalid_api_key | expired_token
     ├── PermissionDenied            403 code=forbidden
     ├── NotFound                    404 code=not_found
     ├── RateLimited                 429 code=rate_limit_exceeded   (retry_after)
     ├── InsufficientQuota           429 insufficient_quota          (an app's budget is spent)
     ├── Unavailable                 503 code=unavailable            (retry_after)
     │    └── StoreUnavailable       503 code=store_unavailable     (the shared store is down)
     └── UpstreamError               502 server_error (retryable, upstream_status)
          └── UpstreamTimeout        504
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.param = param

    def to_body(self) -> dict[str, Any]:
        """The OpenAI-shaped error object, as both HTTP bodies and ``error`` events carry it."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, {self.message!r})"


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidOffer(InvalidRequest):
    code = "invalid_offer"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    code = "unsupported_content_type"


class AuthenticationError(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class InsufficientQuota(GatewayError):
    """An app (or one of its end users) has spent its budget: OpenAI's own quota error, so
    code written for OpenAI already handles it."""

    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


class Unavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class StoreUnavailable(Unavailable):
    """The shared store (Redis) cannot be reached: what needs it waits, live calls go on."""

    code = "store_unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(
            message
            or "The gateway's shared store is unreachable; retry shortly (live calls go on).",
            retry_after=retry_after,
        )


class UpstreamError(GatewayError):
    """The upstream (OpenAI or the emulator) refused, failed or vanished.

    ``retryable`` follows the usual rule: 4xx is the request's fault and not retryable, except
    408/429; 5xx and transport failures are retryable.
    """

    status = 502
    type = "server_error"
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        code: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, param=param)
        self.upstream_status = upstream_status
        if retryable is None:
            retryable = (
                upstream_status is None
                or upstream_status >= 500
                or upstream_status
                in (
                    408,
                    429,
                )
            )
        self.retryable = retryable

    @property
    def kind(self) -> str:
        """The code to count it under: one of the gateway's own, never one the upstream made
        up (an upstream's code is its to choose, and a metric label must stay bounded)."""
        code = self.code or "upstream_error"
        if code in _COUNTED_CODES:
            return code
        return "upstream_rejected" if self.status < 500 and self.status != 429 else "upstream_error"


_COUNTED_CODES = frozenset(
    {
        "upstream_timeout",
        "upstream_unreachable",
        "upstream_bad_answer",
        "upstream_auth_failed",
        "upstream_error",
        "upstream_rejected",
        "rate_limit_exceeded",
        "insufficient_quota",
    }
)


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
