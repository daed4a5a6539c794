"""Reading request bodies with hard size limits: raw SDP, multipart ``sdp`` + ``session``, JSON."""

from __future__ import annotations

import asyncio
import json
import zlib
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


def content_coding(request: web.BaseRequest) -> str | None:
    """The body's ``Content-Encoding`` if it is one we inflate, ``None`` for none; else 415."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return coding
    raise UnsupportedMediaType(
        f"Unsupported Content-Encoding {coding!r}: send the body uncompressed, gzip or deflate.",
        code="unsupported_content_encoding",
    )


class _Inflater:
    """Inflates a gzip or deflate body as it arrives, and insists the stream ends exactly where
    the body does (aiohttp's parser, which would otherwise do this, answers a broken stream
    itself, outside our error handling: fuzz F13)."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib: Any = None

    def feed(self, chunk: bytes, room: int) -> bytes:
        """What ``chunk`` inflates to, cut at ``room + 1`` bytes: more than ``room`` is already
        too much, and a bomb must not be inflated further to find out by how much."""
        if self._zlib is None:
            self._zlib = zlib.decompressobj(self._wbits(chunk))
        if self._zlib.eof:
            raise self._broken()
        try:
            out: bytes = self._zlib.decompress(chunk, room + 1)
        except zlib.error:
            raise self._broken() from None
        if self._zlib.unused_data:
            raise self._broken()
        return out

    def finish(self) -> None:
        if self._zlib is not None and not self._zlib.eof:
            raise self._broken()

    def _wbits(self, first: bytes) -> int:
        if self._coding != "deflate":
            return 16 + zlib.MAX_WBITS
        # "deflate" is meant to be zlib-wrapped (RFC 9110), but some clients send it raw.
        wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS

    def _broken(self) -> InvalidRequest:
        return InvalidRequest(
            f"The request body is not a complete {self._coding} stream.", code="invalid_body"
        )


async def _read_limited(stream: Any, limit: int, coding: str | None = None) -> bytes:
    """At most ``limit`` bytes of body, inflated first if ``coding`` says so."""
    inflater = _Inflater(coding) if coding else None
    chunks: list[bytes] = []
    size = received = 0
    try:
        async with asyncio.timeout(READ_DEADLINE):
            while True:
                if hasattr(stream, "readany"):
                    chunk = await stream.readany()
                else:
                    chunk = await stream.read_chunk()
                if not chunk:
                    if inflater is not None:
                        inflater.finish()
                    return b"".join(chunks)
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                if inflater is not None:
                    chunk = inflater.feed(chunk, limit - size)
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
    coding = content_coding(request)
    if content_type == "application/sdp":
        sdp = _text(await _read_limited(request.content, limit, coding), "SDP offer")
        return OfferBody(sdp=sdp, session=None, kind="sdp")
    if content_type == "multipart/form-data":
        if coding is not None:
            raise UnsupportedMediaType(
                "A multipart body cannot be compressed: send it without Content-Encoding.",
                code="unsupported_content_encoding",
            )
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
    data = await _read_limited(request.content, limit, content_coding(request))
    if not data.strip():
        return None
    try:
        return json.loads(_text(data, "request body"))
    except ValueError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
