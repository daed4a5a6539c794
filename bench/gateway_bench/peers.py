"""Browser-side client peers: dial like OpenAI's browser code, send the marker loop, log arrivals.

A client dials either the gateway (mint an ``ek_`` secret with the gateway key, then POST the
raw SDP offer with it, as a browser does) or, for the no-gateway baseline, the bench upstream
directly (multipart ``sdp`` + ``session`` with the upstream key, as the gateway does). Either
way the call is tied to its upstream side by the probe's key in ``session.instructions``.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCDataChannel, RTCSessionDescription

from gateway.rtc.client import BrowserClient
from gateway.rtc.compat import OwnedPeerConnection
from gateway_bench.probe import CallProbe, Pinger
from gateway_bench.stream import MarkerTrack, tap_receiver
from gateway_bench.upstream import LOOPBACK

HTTP_TIMEOUT = 15.0


class DialError(Exception):
    """A call could not be set up; the message says at which step and why."""


@dataclass(frozen=True)
class Target:
    """Where clients dial: the gateway (``via_gateway``) or the bench upstream directly."""

    base_url: str  # ends in /v1
    key: str  # the gateway key, or the bench upstream's key
    via_gateway: bool

    @property
    def calls_url(self) -> str:
        return f"{self.base_url}/realtime/calls"


class BenchClient:
    """One browser-side call."""

    def __init__(self, probe: CallProbe, target: Target, events_per_second: float) -> None:
        self.probe = probe
        self.target = target
        self.call_id: str | None = None
        self.pc: OwnedPeerConnection | None = None
        self._client: BrowserClient | None = None
        self._track = MarkerTrack(probe.up)
        self._pinger = Pinger(probe.up_events, events_per_second)
        self._closed = False

    async def connect(self, http: aiohttp.ClientSession) -> None:
        """Set the call up; raises :class:`DialError`. Timings go to the probe."""
        token = await self._mint(http) if self.target.via_gateway else None
        sdp = await self._offer()
        self.probe.offer_sent = time.monotonic()
        answer = await self._post_offer(http, sdp, token)
        self.probe.answer_received = time.monotonic()
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def _mint(self, http: aiohttp.ClientSession) -> str:
        body = {"session": {"type": "realtime", "instructions": self.probe.key}}
        headers = {"Authorization": f"Bearer {self.target.key}"}
        url = f"{self.target.base_url}/realtime/client_secrets"
        status, text = await _post(http, url, json_body=body, headers=headers)
        if status != 200:
            raise DialError(f"client secret: HTTP {status}: {text[:200]}")
        value = json.loads(text).get("value")
        if not isinstance(value, str):
            raise DialError("client secret: no 'value' in the response")
        return value

    async def _offer(self) -> str:
        # Dialled as OpenAI's browser code dials (the shared client: channel, then microphone).
        client = BrowserClient(self._track, ice_addresses=LOOPBACK, codec="opus")
        self._client = client
        sdp = await client.create_offer()
        assert client.pc is not None and client.channel is not None
        assert client.transceiver is not None
        self.pc = client.pc
        channel = client.channel
        channel.on("open", lambda: self._on_open(channel))
        events = self.probe.down_events
        channel.on("message", lambda message: events.receive(message, time.monotonic()))
        tap_receiver(client.transceiver.receiver, self.probe.down)
        return sdp

    async def _post_offer(self, http: aiohttp.ClientSession, sdp: str, token: str | None) -> str:
        assert self._client is not None
        session = (
            None if token is not None else {"type": "realtime", "instructions": self.probe.key}
        )
        try:
            result = await self._client.post_offer(
                http,
                self.target.calls_url,
                sdp,
                token=token if token is not None else self.target.key,
                session=session,
                timeout=HTTP_TIMEOUT,
            )
        except TimeoutError:
            raise DialError(f"offer: no answer within {HTTP_TIMEOUT:g} s") from None
        except aiohttp.ClientError as exc:
            raise DialError(f"offer: {type(exc).__name__}: {exc}") from None
        if result.status != 201:
            raise DialError(f"offer: HTTP {result.status}: {result.body[:200]}")
        self.call_id = result.call_id
        if self.call_id is None:
            raise DialError("offer: the 201 had no Location header")
        return result.body

    def _on_open(self, channel: RTCDataChannel) -> None:
        self.probe.channel_open = time.monotonic()
        self._pinger.start(channel)

    async def hangup(self, http: aiohttp.ClientSession) -> None:
        """Hang up through the HTTP API (as an app's backend does), then close the peer."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.call_id is not None:
                url = f"{self.target.calls_url}/{self.call_id}/hangup"
                headers = {"Authorization": f"Bearer {self.target.key}"}
                status, text = await _post(http, url, headers=headers)
                if status not in (200, 404):
                    self.probe.error = self.probe.error or f"hangup: HTTP {status}: {text[:100]}"
        except DialError as exc:
            self.probe.error = self.probe.error or str(exc)
        finally:
            await self.close()

    async def close(self) -> None:
        self._closed = True
        self._track.stop()
        await self._pinger.stop()
        if self.pc is not None:
            await self.pc.close()


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    *,
    json_body: Any = None,
    headers: dict[str, str],
) -> tuple[int, str]:
    try:
        async with asyncio.timeout(HTTP_TIMEOUT):
            async with http.post(url, json=json_body, headers=headers) as response:
                return response.status, await response.text()
    except TimeoutError:
        raise DialError(f"POST {url}: no answer within {HTTP_TIMEOUT:g} s") from None
    except aiohttp.ClientError as exc:
        raise DialError(f"POST {url}: {type(exc).__name__}: {exc}") from None
