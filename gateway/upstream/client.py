"""The HTTP side of the upstream leg: OpenAI's GA ``/realtime/calls`` contract, GPT-Live's
``/live/sessions``, and Realtime translations' ``/realtime/translations/client_secrets`` and
``/realtime/translations/calls``.

The only module that knows the upstream URL layout and sends the OpenAI key. Project keys go
as ``multipart/form-data`` (``sdp`` + ``session``), never as raw SDP, which OpenAI reserves for
ephemeral tokens (protocol.md §1). No ``OpenAI-Beta`` header, ever. Upstream error bodies are
translated into our error tree and their messages scrubbed: OpenAI's 401 text quotes part of
the key.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from gateway.config import Secret
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.log import redact_text
from gateway.protocol.sdp import call_id_from_location

log = structlog.get_logger(__name__)

USER_AGENT = "realtime-gateway"
# The most of an upstream's answer to a new call or session read: an SDP answer is a few KiB,
# and a hostile or broken upstream must not make the gateway hold whatever it sends.
MAX_ANSWER_BYTES = 1024 * 1024
# A Live session id is opaque but goes into the hangup URL (with the key): nothing that could
# leave its path segment ("../", "?", "#") or flood the logs.
_LIVE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
# What of an upstream error's code is kept: a short identifier (it may become a metric label).
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,64}")
# An upstream client secret goes into an Authorization header and a session id into logs:
# nothing that could break either.
_SECRET = re.compile(r"[A-Za-z0-9_.~+/=-]{1,1024}")


@dataclass(frozen=True)
class UpstreamAnswer:
    sdp: str
    call_id: str | None


@dataclass(frozen=True)
class UpstreamSecret:
    """A client secret the upstream minted for one session (never shown to a browser)."""

    value: str
    session_id: str | None

    def __repr__(self) -> str:
        return f"UpstreamSecret(session_id={self.session_id!r})"


class UpstreamClient:
    """Creates and hangs up upstream calls; constructed once per app, shared by all calls."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout

    @property
    def calls_url(self) -> str:
        return f"{self._base_url}/realtime/calls"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key.reveal()}",
            "User-Agent": USER_AGENT,
        }

    async def create_call(self, offer_sdp: str, session: dict[str, Any]) -> UpstreamAnswer:
        """POST the offer; return the SDP answer and the upstream ``rtc_…`` call id."""
        form = aiohttp.FormData()
        form.add_field("sdp", offer_sdp, content_type="application/sdp")
        form.add_field("session", json.dumps(session), content_type="application/json")
        body, location = await self._post(
            self.calls_url, "answer the call", data=form, headers=self._headers()
        )
        if not body.lstrip().startswith("v=0"):
            raise UpstreamError(
                "The upstream answered the call with something that is not an SDP answer.",
                code="upstream_bad_answer",
            )
        return UpstreamAnswer(sdp=body, call_id=call_id_from_location(location))

    @property
    def translations_url(self) -> str:
        return f"{self._base_url}/realtime/translations"

    async def create_translation_secret(self, session: dict[str, Any]) -> UpstreamSecret:
        """``POST /realtime/translations/client_secrets`` with the project key: a client secret
        bound to a translation session, for the SDP exchange that follows."""
        url = f"{self.translations_url}/client_secrets"
        text, _ = await self._post(
            url, "mint a translation secret", json={"session": session}, headers=self._headers()
        )
        try:
            created = json.loads(text)
            value = created["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if not isinstance(value, str) or not _SECRET.fullmatch(value):
            raise UpstreamError(
                "The upstream answered the translation secret request with no usable secret.",
                code="upstream_bad_answer",
            )
        session_id = created.get("session", {}).get("id") if isinstance(created, dict) else None
        if not isinstance(session_id, str) or not _LIVE_ID.fullmatch(session_id):
            session_id = None
        return UpstreamSecret(value=value, session_id=session_id)

    async def create_translation_call(
        self, offer_sdp: str, secret: UpstreamSecret
    ) -> UpstreamAnswer:
        """``POST /realtime/translations/calls``: the raw SDP offer, authorised by the
        session's client secret as a browser would send it (the path comes from OpenAI's
        public client samples; no reference page documents it)."""
        headers = {
            "Authorization": f"Bearer {secret.value}",
            "User-Agent": USER_AGENT,
            "Content-Type": "application/sdp",
        }
        body, location = await self._post(
            f"{self.translations_url}/calls",
            "answer the call",
            data=offer_sdp.encode(),
            headers=headers,
        )
        if not body.lstrip().startswith("v=0"):
            raise UpstreamError(
                "The upstream answered the call with something that is not an SDP answer.",
                code="upstream_bad_answer",
            )
        call_id = call_id_from_location(location)
        if call_id is not None and not _LIVE_ID.fullmatch(call_id):
            call_id = None
        return UpstreamAnswer(sdp=body, call_id=call_id)

    @property
    def live_url(self) -> str:
        return f"{self._base_url}/live/sessions"

    async def create_live_session(self, offer_sdp: str, session: dict[str, Any]) -> UpstreamAnswer:
        """GPT-Live's ``POST /live/sessions``: JSON in, ``201`` JSON with the answer and the
        session's id out (kept as OpenAI wrote it)."""
        body = {"session": session, "transport": {"type": "webrtc", "sdp": offer_sdp}}
        text, _ = await self._post(
            self.live_url, "answer the session", json=body, headers=self._headers()
        )
        try:
            created = json.loads(text)
            session_id = created["session"]["id"]
            sdp = created["transport"]["sdp"]
        except (ValueError, KeyError, TypeError):
            session_id = sdp = None
            try:  # the session may exist though its answer is unusable: it must be ended
                session_id = json.loads(text)["session"]["id"]
            except (ValueError, KeyError, TypeError):
                pass
        if not isinstance(session_id, str) or not _LIVE_ID.fullmatch(session_id):
            session_id = None  # nothing the gateway can safely hang up
        if session_id is None or not isinstance(sdp, str) or "v=0" not in sdp[:10]:
            if session_id is not None:
                try:
                    await self.hangup_live(session_id)
                except UpstreamError as exc:
                    log.warning("upstream.bad_answer_hangup_failed", code=exc.code)
            raise UpstreamError(
                "The upstream answered the session with something that is not a Live answer.",
                code="upstream_bad_answer",
            )
        return UpstreamAnswer(sdp=sdp, call_id=session_id)

    async def _post(self, url: str, what: str, **request: Any) -> tuple[str, str]:
        """POST to the upstream: its body (capped) and ``Location`` for a 200/201; the error
        tree for anything else (the exception text of a failed connection can echo request
        details, so only its class is kept)."""
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http.post(url, **request) as response:
                    body = await _read_capped(response, MAX_ANSWER_BYTES)
                    if response.status not in (200, 201):
                        raise _status_error(response.status, body)
                    return body, response.headers.get("Location", "")
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream did not {what} within {self._timeout:g} s.",
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"Could not reach the upstream ({type(exc).__name__}).",
                code="upstream_unreachable",
            ) from None

    async def hangup_live(self, session_id: str) -> None:
        """``POST /live/sessions/{id}/hangup``; an already-ended session (404) counts as done."""
        await self._hangup(f"{self.live_url}/{session_id}/hangup")

    async def hangup(self, call_id: str) -> None:
        """``POST /realtime/calls/{id}/hangup``; an already-ended call (404) counts as done."""
        await self._hangup(f"{self.calls_url}/{call_id}/hangup")

    async def _hangup(self, url: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                async with self._http.post(url, headers=self._headers()) as response:
                    body = await response.text()
                    if response.status >= 400 and response.status != 404:
                        raise _status_error(response.status, body)
        except TimeoutError:
            raise UpstreamTimeout("The upstream did not answer the hangup in time.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"Could not reach the upstream to hang up ({type(exc).__name__}).",
                code="upstream_unreachable",
            ) from None


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> str:
    """The body as text; an upstream error beyond ``limit`` bytes, read no further."""
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise UpstreamError(
                f"The upstream's answer is larger than {limit} bytes.", code="upstream_bad_answer"
            )
    return data.decode("utf-8", "replace")


def _status_error(status: int, body: str) -> UpstreamError:
    """Translate an upstream non-2xx into our error tree, keeping what helps the caller."""
    message, code, param = "", None, None
    try:
        parsed = json.loads(body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            code = error.get("code") if isinstance(error.get("code"), str) else None
            param = error.get("param") if isinstance(error.get("param"), str) else None
    except ValueError:
        pass
    message = redact_text(message)
    if code is not None and not _ERROR_CODE.fullmatch(code):
        code = None
    if param is not None:
        param = redact_text(param)[:200]
    if status in (401, 403):
        # The browser's credentials were fine; ours were not. Never echo OpenAI's text here.
        return UpstreamError(
            "The upstream rejected the gateway's credentials; check OPENAI_API_KEY.",
            upstream_status=status,
            code="upstream_auth_failed",
            status=502,
        )
    if status == 429:
        err = UpstreamError(
            f"The upstream is rate limiting: {message or 'too many requests'}",
            upstream_status=status,
            code=code or "rate_limit_exceeded",
            status=429,
        )
        err.type = "rate_limit_error"
        return err
    if 400 <= status < 500:
        # Most often the session configuration the app asked for; the message says what.
        err = UpstreamError(
            message or f"The upstream refused the call (HTTP {status}).",
            upstream_status=status,
            code=code or "upstream_rejected",
            param=param,
            status=400,
        )
        err.type = "invalid_request_error"
        return err
    return UpstreamError(
        f"The upstream failed (HTTP {status}){': ' + message if message else ''}.",
        upstream_status=status,
        code=code or "upstream_error",
        status=502,
    )
