"""The emulator's HTTP side: OpenAI's GA ``/v1/realtime/calls`` contract, GPT-Live's
``/v1/live/sessions``, and Realtime translations' ``/v1/realtime/translations/client_secrets``
and ``/v1/realtime/translations/calls``, on aiohttp.

``Emulator.app`` can be served by anything that serves an aiohttp application (the test client
included); ``start()``/``aclose()`` run it on their own site for use as a real upstream.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.emulator.call import CallOptions, EmulatorCall
from gateway.emulator.errors import (
    InvalidRequest,
    NotFound,
    OpenAIError,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from gateway.emulator.live import LiveConversation
from gateway.emulator.signaling import (
    check_offer,
    new_live_id,
    parse_call_request,
    parse_live_request,
    request_kind,
)
from gateway.emulator.translation import TranslationSession
from gateway.emulator.vad import VadConfig
from gateway.errors import InvalidRequest as GatewayInvalidRequest
from gateway.protocol import live as live_contract
from gateway.protocol import translation as translation_contract

log = structlog.get_logger(__name__)

CALLS_PATH = "/v1/realtime/calls"
LIVE_PATH = "/v1/live/sessions"
TRANSLATIONS_PATH = "/v1/realtime/translations"
# Translation client secrets kept at once; minting beyond drops the oldest.
MAX_SECRETS = 10_000
SECRET_TTL = 600


@dataclass(frozen=True)
class EmulatorSettings:
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    api_key: str | None = None
    """If set, ``Authorization`` must be ``Bearer <api_key>``; else any bearer token will do."""
    model: str = "realtime-emulator"
    vad_threshold_rms: float = 0.02
    """Linear RMS (0..1 of full scale) at which audio counts as speech; -34 dBFS."""
    vad_silence_ms: float = 500.0
    """The default ``silence_duration_ms`` of the session's ``server_vad``."""
    vad_prefix_padding_ms: float = 300.0
    vad_min_speech_ms: float = 40.0
    response_pace: float = 2.0
    """Seconds of response audio "generated" per second: a response stays active (cancellable)
    for its audio length divided by this, and ``response.done`` comes at the end of it."""
    connect_timeout: float = 15.0
    """A call whose data channel has not opened by then is ended."""
    max_call_seconds: float = 3600.0
    """GA's 60 minute limit."""
    max_echo_seconds: float = 30.0
    max_body_bytes: int = 64 * 1024
    record_events: bool = False
    """Keep each call's events (the latest ``RECORDED_EVENTS`` each way) for inspection."""
    recent_calls: int = 64
    """Ended calls kept for inspection (``Emulator.calls``), beyond the live ones."""

    def __post_init__(self) -> None:
        for name in ("response_pace", "connect_timeout", "max_call_seconds", "max_echo_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"EmulatorSettings.{name} must be > 0 (got {getattr(self, name)})")

    def call_options(self, *, record_events: bool | None = None) -> CallOptions:
        return CallOptions(
            model=self.model,
            ice_addresses=self.ice_addresses,
            vad=VadConfig(
                threshold_rms=self.vad_threshold_rms,
                silence_duration_ms=self.vad_silence_ms,
                prefix_padding_ms=self.vad_prefix_padding_ms,
                min_speech_ms=self.vad_min_speech_ms,
            ),
            response_pace=self.response_pace,
            connect_timeout=self.connect_timeout,
            max_call_seconds=self.max_call_seconds,
            max_echo_seconds=self.max_echo_seconds,
            record_events=self.record_events if record_events is None else record_events,
        )


DEFAULT_SETTINGS = EmulatorSettings()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(error: OpenAIError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


@web.middleware
async def _openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as ``{"error": {...}}``, never as a traceback or an HTML page."""
    try:
        return await handler(request)
    except OpenAIError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = OpenAIError(
            f"Invalid URL ({request.method} {request.path})"
            if exc.status in (404, 405)
            else exc.reason,
            status=exc.status,
            type="invalid_request_error",
        )
        return _error_response(error)
    except Exception:
        log.exception("emulator.request_failed", path=request.path)
        return _error_response(OpenAIError("The emulator failed to handle the request."))


class Emulator:
    def __init__(self, settings: EmulatorSettings = DEFAULT_SETTINGS) -> None:
        self.settings = settings
        # The live calls and the latest ended ones (settings.recent_calls), in creation order.
        self._calls: dict[str, EmulatorCall] = {}
        self._ended: deque[str] = deque()
        self.record_events = settings.record_events
        """Whether calls made from now on keep their events for inspection."""
        self.calls: Mapping[str, EmulatorCall] = types.MappingProxyType(self._calls)
        self._reject: tuple[int, dict[str, Any]] | None = None
        self._runner: web.AppRunner | None = None
        self._closed = False
        self._app = web.Application(middlewares=[_openai_errors])
        self._app.router.add_post(CALLS_PATH, self._create_call)
        self._app.router.add_post(CALLS_PATH + "/{call_id}/hangup", self._hangup)
        self._app.router.add_post(LIVE_PATH, self._create_live_session)
        self._app.router.add_post(LIVE_PATH + "/{call_id}/hangup", self._hangup_live)
        self._app.router.add_post(
            TRANSLATIONS_PATH + "/client_secrets", self._create_translation_secret
        )
        self._app.router.add_post(TRANSLATIONS_PATH + "/calls", self._create_translation_call)
        # Translation client secrets: token → (expires_at, the session it is bound to).
        self._secrets: dict[str, tuple[int, dict[str, Any]]] = {}
        self._app.on_shutdown.append(self._on_shutdown)

    @property
    def app(self) -> web.Application:
        return self._app

    def reject_next_call(self, status: int, error: dict[str, Any]) -> None:
        """The next ``POST /calls`` answers ``status`` with ``{"error": error}``."""
        self._reject = (status, error)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the base URL, ``http://…/v1``."""
        if self._runner is not None:
            raise RuntimeError("The emulator is already started.")
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        log.info("emulator.started", host=host, port=bound)
        return f"http://{host}:{bound}/v1"

    async def aclose(self) -> None:
        """End every call and stop serving. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._end_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _end_all(self) -> None:
        await asyncio.gather(*(call.end("shutdown") for call in list(self._calls.values())))

    async def _on_shutdown(self, app: web.Application) -> None:
        await self._end_all()

    def _authorize(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        if self.settings.api_key is not None and token.strip() != self.settings.api_key:
            raise Unauthorized("Incorrect API key provided.")

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("The emulator is shutting down.")

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = PayloadTooLarge(f"The request body is too large; the limit is {limit} bytes.")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        body = bytearray()
        while chunk := await request.content.read(16 * 1024):
            body += chunk
            if len(body) > limit:
                raise too_large
        return bytes(body)

    async def _create_call(self, request: web.Request) -> web.StreamResponse:
        if self._reject is not None:
            (status, error), self._reject = self._reject, None
            log.info("emulator.call_rejected", status=status)
            return web.json_response({"error": error}, status=status)
        self._authorize(request)
        self._check_open()
        content_type = request.headers.get("Content-Type", "")
        request_kind(content_type)  # 415 before reading a body of the wrong kind
        body = await self._read_body(request)
        offer = parse_call_request(content_type, body)
        check_offer(offer.sdp)
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() != "authorization"
        )
        call = EmulatorCall(
            self.settings.call_options(record_events=self.record_events),
            request_headers=CIMultiDictProxy(headers),
            request_kind=offer.kind,
            initial_session=offer.session,
        )
        answer = await call.answer(offer.sdp)
        self._calls[call.call_id] = call
        call.on_ended = self._call_ended
        if self._closed:  # aclose() ran while this call was being answered
            await call.end("shutdown")
            self._check_open()
        return web.Response(
            status=201,
            body=answer.encode("utf-8"),
            content_type="application/sdp",
            headers={"Location": f"{CALLS_PATH}/{call.call_id}"},
        )

    async def _create_live_session(self, request: web.Request) -> web.StreamResponse:
        """GPT-Live's ``POST /v1/live/sessions``: JSON in, ``201`` JSON with the answer out."""
        if self._reject is not None:
            (status, error), self._reject = self._reject, None
            log.info("emulator.call_rejected", status=status)
            return web.json_response({"error": error}, status=status)
        self._authorize(request)
        self._check_open()
        created = parse_live_request(await self._read_body(request))
        check_offer(created.sdp)
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() != "authorization"
        )
        options = self.settings.call_options(record_events=self.record_events)

        def dialogue(session_id: str, position: Callable[[], float]) -> LiveConversation:
            return LiveConversation(
                session_id,
                created.session,
                vad=options.vad,
                playback_position=position,
                max_echo_ms=options.max_echo_seconds * 1000,
            )

        call = EmulatorCall(
            options,
            request_headers=CIMultiDictProxy(headers),
            request_kind="live",
            initial_session=created.session,
            call_id=new_live_id(),
            dialogue=dialogue,
        )
        answer = await call.answer(created.sdp)
        self._calls[call.call_id] = call
        call.on_ended = self._call_ended
        if self._closed:
            await call.end("shutdown")
            self._check_open()
        return web.json_response(live_contract.create_response(call.call_id, answer), status=201)

    async def _create_translation_secret(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/realtime/translations/client_secrets`` with the API key."""
        self._authorize(request)
        self._check_open()
        try:
            decoded = json.loads((await self._read_body(request)).decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("The body is not valid JSON.", code="invalid_json") from None
        try:
            ttl, requested = translation_contract.parse_client_secret_request(decoded, SECRET_TTL)
        except GatewayInvalidRequest as exc:
            raise InvalidRequest(
                exc.message, code=exc.code or "invalid_request", param=exc.param
            ) from None
        now = int(time.time())
        self._secrets = {t: s for t, s in self._secrets.items() if s[0] > now}
        while len(self._secrets) >= MAX_SECRETS:
            del self._secrets[next(iter(self._secrets))]
        token = "ek_" + secrets.token_urlsafe(24)
        session = translation_contract.bound_session(
            translation_contract.new_session_id(), requested
        )
        self._secrets[token] = (now + ttl, session)
        view = translation_contract.session_view(session, now + ttl)
        return web.json_response({"value": token, "expires_at": now + ttl, "session": view})

    async def _create_translation_call(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/realtime/translations/calls``: a raw SDP offer with a translation client
        secret; ``201`` with the SDP answer. No ``Location``: none is documented."""
        if self._reject is not None:
            (status, error), self._reject = self._reject, None
            log.info("emulator.call_rejected", status=status)
            return web.json_response({"error": error}, status=status)
        session = self._translation_session(request)
        self._check_open()
        content_type = request.headers.get("Content-Type", "")
        if request_kind(content_type) != "sdp":
            raise UnsupportedMediaType(
                "A translation call takes the SDP offer as 'application/sdp'."
            )
        offer = parse_call_request(content_type, await self._read_body(request))
        check_offer(offer.sdp)
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() != "authorization"
        )
        options = self.settings.call_options(record_events=self.record_events)
        # A secret may open several sessions: the first has the id its secret named.
        if session["id"] in self._calls:
            session = {**session, "id": translation_contract.new_session_id()}

        def dialogue(call_id: str, position: Callable[[], float]) -> TranslationSession:
            return TranslationSession(
                session,
                vad=options.vad,
                lifetime_s=options.max_call_seconds,
                max_echo_ms=options.max_echo_seconds * 1000,
            )

        call = EmulatorCall(
            options,
            request_headers=CIMultiDictProxy(headers),
            request_kind="translation",
            initial_session=session,
            call_id=session["id"],
            dialogue=dialogue,
        )
        answer = await call.answer(offer.sdp)
        self._calls[call.call_id] = call
        call.on_ended = self._call_ended
        if self._closed:
            await call.end("shutdown")
            self._check_open()
        return web.Response(status=201, body=answer.encode("utf-8"), content_type="application/sdp")

    def _translation_session(self, request: web.Request) -> dict[str, Any]:
        """The session a translation call's bearer secret is bound to; 401 for anything else
        (the API key included: the samples open these calls with a client secret)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found = self._secrets.get(token.strip()) if scheme.lower() == "bearer" else None
        if found is None or found[0] <= time.time():
            raise Unauthorized(
                "Invalid or expired client secret. Mint one with "
                "POST /v1/realtime/translations/client_secrets."
            )
        return dict(found[1])

    async def _hangup_live(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        session_id = request.match_info["call_id"]
        call = self._calls.get(session_id)
        if call is None or call.request_kind != "live":
            raise NotFound(f"Session not found: {session_id!r}.", code="session_not_found")
        call.hung_up = True
        await call.end("hangup")
        return web.Response(status=200)

    def _call_ended(self, call: EmulatorCall) -> None:
        """Keep the latest ended calls for inspection; forget older ones."""
        self._ended.append(call.call_id)
        while len(self._ended) > self.settings.recent_calls:
            self._calls.pop(self._ended.popleft(), None)

    async def _hangup(self, request: web.Request) -> web.StreamResponse:
        self._authorize(request)
        call_id = request.match_info["call_id"]
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"Call not found: {call_id!r}.", code="call_id_not_found")
        call.hung_up = True
        await call.end("hangup")
        return web.Response(status=200)
