"""OpenAI's error shapes, as the emulator answers them: written from OpenAI's API reference,
not shared with the gateway, so the gateway's own error handling is checked against them.

Every failure is ``{"error": {"message", "type", "code", "param"}}``: in an HTTP body with its
status, or (with ``event_id``) in an ``error`` event on the data channel.
"""

from __future__ import annotations

from typing import Any


class OpenAIError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    def error_object(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "code": self.code, "param": self.param}

    def body(self) -> dict[str, Any]:
        return {"error": self.error_object()}


class InvalidRequest(OpenAIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(OpenAIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(OpenAIError):
    status = 404
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    code = "unsupported_content_type"


class Unavailable(OpenAIError):
    status = 503
    code = "unavailable"
