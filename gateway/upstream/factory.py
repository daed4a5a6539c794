"""Where calls' upstream sessions come from: OpenAI, or the built-in emulator without a key."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import aiohttp
import structlog

from gateway.config import Secret, Settings
from gateway.emulator import Emulator, EmulatorSettings
from gateway.metrics import Metrics
from gateway.rtc.media import MediaPath
from gateway.upstream.base import Upstream
from gateway.upstream.client import UpstreamClient
from gateway.upstream.live import LiveUpstream
from gateway.upstream.realtime import RealtimeOptions, RealtimeUpstream
from gateway.upstream.translation import TranslationUpstream

log = structlog.get_logger(__name__)


class RealtimeUpstreams:
    """An :data:`~gateway.upstream.base.UpstreamFactory`: OpenAI Realtime calls at one URL."""

    def __init__(
        self,
        client: UpstreamClient,
        *,
        kind: Literal["openai", "emulator"],
        base_url: str,
        options: RealtimeOptions,
        metrics: Metrics,
        emulator: Emulator | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.base_url = base_url
        self.emulator = emulator
        self._options = options
        self._metrics = metrics

    def __call__(self, media: MediaPath) -> Upstream:
        return RealtimeUpstream(media, self.client, options=self._options, metrics=self._metrics)

    def live(self, media: MediaPath) -> Upstream:
        """A GPT-Live session at the same URL, with the same key."""
        return LiveUpstream(media, self.client, options=self._options, metrics=self._metrics)

    def translation(self, media: MediaPath) -> Upstream:
        """A Realtime translation session at the same URL, with the same key."""
        return TranslationUpstream(media, self.client, options=self._options, metrics=self._metrics)


@asynccontextmanager
async def realtime_upstreams(
    settings: Settings, options: RealtimeOptions, metrics: Metrics
) -> AsyncIterator[RealtimeUpstreams]:
    """OpenAI with ``OPENAI_API_KEY``; else a built-in emulator on loopback, for this process,
    answering only this gateway (a fresh internal key per run)."""
    async with aiohttp.ClientSession() as http:
        emulator: Emulator | None = None
        if settings.openai_api_key is None:
            internal = Secret("sk-emulator-" + secrets.token_urlsafe(16))
            emulator = Emulator(
                EmulatorSettings(
                    ice_addresses=settings.upstream_ice_addresses or ("127.0.0.1",),
                    api_key=internal.reveal(),
                )
            )
            base_url, key = await emulator.start(), internal
        else:
            base_url, key = settings.openai_base_url, settings.openai_api_key
        kind: Literal["openai", "emulator"] = "emulator" if emulator else "openai"
        client = UpstreamClient(http, base_url, key, timeout=settings.upstream_timeout)
        log.info("upstream.ready", upstream=kind, base_url=base_url)
        try:
            yield RealtimeUpstreams(
                client,
                kind=kind,
                base_url=base_url,
                options=options,
                metrics=metrics,
                emulator=emulator,
            )
        finally:
            if emulator is not None:
                await emulator.aclose()
