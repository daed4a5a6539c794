"""Reading request bodies with hard size limits: raw SDP, multipart ``sdp`` + ``session``, JSON."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType


@dataclass(frozen=True)
class OfferBody:
    sdp: str
    session: Any | None
    kind: str  # "sdp" | "multipart"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


# A body that trickles in (or whose chunked framing never ends) must not hold a request forever.
READ_DEADLINE = 15.0


async def _read_limited(stream: Any, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(READ_DEADLINE):
            while True:
                if hasattr(stream, "readany"):
                    chunk = await stream.readany()
                else:
                    chunk = await stream.read_chunk()
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise InvalidRequest(
            f"The request body did not arrive within {READ_DEADLINE:g} s.",
            code="body_timeout",
            status=408,
        ) from None


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The {what} is not valid UTF-8.", code="invalid_encoding") from None


async def read_offer(request: web.Request, limit: int) -> OfferBody:
    """The SDP offer (and optional session) of a call request, as OpenAI accepts them."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    content_type = request.content_type
    if content_type == "application/sdp":
        sdp = _text(await _read_limited(request.content, limit), "SDP offer")
        return OfferBody(sdp=sdp, session=None, kind="sdp")
    if content_type == "multipart/form-data":
        return await _read_multipart(request, limit)
    raise UnsupportedMediaType(
        f"Unsupported Content-Type {content_type or '(none)'!r}: send the SDP offer as "
        "application/sdp, or multipart/form-data with an 'sdp' part and an optional 'session' "
        "part."
    )


async def _read_multipart(request: web.Request, limit: int) -> OfferBody:
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise InvalidRequest("The multipart body is malformed.", code="invalid_multipart") from None
    sdp: str | None = None
    session: Any = None
    used = 0
    while True:
        try:
            part = await reader.next()
        except (ValueError, AssertionError, KeyError, HttpProcessingError):
            raise InvalidRequest(
                "The multipart body is malformed.", code="invalid_multipart"
            ) from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest(
                "Nested multipart bodies are not supported.", code="invalid_multipart"
            )
        try:
            data = await _read_limited(part, limit - used)
        except (ValueError, AssertionError, HttpProcessingError, RequestPayloadError):
            raise InvalidRequest(
                "The multipart body is malformed.", code="invalid_multipart"
            ) from None
        used += len(data)
        if part.name == "sdp":
            sdp = _text(data, "SDP offer")
        elif part.name == "session":
            try:
                session = json.loads(_text(data, "session part"))
            except ValueError:
                raise InvalidRequest(
                    "The 'session' part is not valid JSON.", param="session", code="invalid_json"
                ) from None
    if sdp is None:
        raise InvalidRequest(
            "Missing required parameter: 'sdp'.", param="sdp", code="missing_required_parameter"
        )
    return OfferBody(sdp=sdp, session=session, kind="multipart")


async def read_json(request: web.Request, limit: int = 64 * 1024) -> Any:
    """A JSON body (empty means ``None``); 415 for other content types."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {request.content_type!r}: send application/json."
        )
    data = await _read_limited(request.content, limit)
    if not data.strip():
        return None
    try:
        return json.loads(_text(data, "request body"))
    except ValueError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
