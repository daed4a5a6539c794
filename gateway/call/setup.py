"""Call setup: from a browser's offer to a call ready to run, with nothing left open on failure.

The upstream session is dialled while the browser's answer is being made, so the gateway adds
little to setup beyond the upstream's own exchange.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from gateway.budgets import Budget, BudgetKeeper
from gateway.call.link import UpstreamLink
from gateway.call.pipeline import EventPipeline
from gateway.config import IceServer
from gateway.config.apps import DEFAULT_APP
from gateway.errors import GatewayError, InvalidOffer
from gateway.hooks import CallInfo, Hooks
from gateway.metrics import Metrics
from gateway.policy import ClientPolicy, PolicyConfig
from gateway.pricing import PriceTable
from gateway.protocol.events import encode_event
from gateway.protocol.live import delegates_to_responses
from gateway.protocol.sdp import inspect_offer
from gateway.recording import CallRecorder, Recordings
from gateway.rtc.ice import PortUsage
from gateway.rtc.media import MediaMode, MediaPath, choose_codec
from gateway.rtc.peer import BROWSER_MAX_MESSAGE, Peer
from gateway.stores.spend import Spend
from gateway.tasks import TaskSet
from gateway.tools import Tool, ToolRegistry, ToolResult, run_tool
from gateway.tools.coordinator import ServerCall, ToolCoordinator
from gateway.tools.live import LiveToolCoordinator
from gateway.transcripts import TranscriptWriter
from gateway.types import Event, Reply
from gateway.upstream.base import Upstream, UpstreamFactory, end_session

if TYPE_CHECKING:
    from gateway.call.call import Call

log = structlog.get_logger(__name__)

Dialect = Literal["ga", "beta", "live", "translation"]


def new_call_id() -> str:
    return "rtc_" + secrets.token_hex(16)


def new_live_session_id() -> str:
    """The gateway's own id for a Live session (OpenAI's ``live_…`` shape; opaque)."""
    return "live_" + secrets.token_hex(16)


@dataclass(frozen=True)
class CallRequest:
    """What the web layer hands over once it has authenticated and parsed a call request."""

    offer_sdp: str
    session: dict[str, Any]
    dialect: Dialect = "ga"
    # Digest of the client secret the call was opened with; it may hang the call up.
    token_digest: bytes | None = None
    # What the upstream is asked for, when it differs from ``session`` (the call's own view):
    # a Live session's frontend permissions are held by the gateway, not sent upstream.
    upstream_session: dict[str, Any] | None = None
    # The app the call is for, and its client-event policy when it differs from the gateway's.
    app: str = DEFAULT_APP
    policy: PolicyConfig | None = None
    # The app's budgets: each response's cost counts against them.
    budget: Budget = field(default_factory=Budget)


@dataclass(frozen=True)
class LegOptions:
    """How the browser leg is set up, and the limits of a running call."""

    ice_addresses: tuple[str, ...] = ()
    # The browser leg's ports are the ones published from a container; the upstream leg only
    # dials out, through NAT, like any client, so it keeps the OS's ports.
    ice_port_range: tuple[int, int] | None = None
    public_ip: str | None = None
    ice_servers: tuple[IceServer, ...] = ()
    relay_only: bool = False
    connect_timeout: float = 20.0
    media: MediaMode = "passthrough"
    peer_timeout: float = 6.0
    idle_timeout: float = 600.0
    max_duration: float = 3600.0
    # Replace a Realtime call's upstream session that expires or fails, keeping the browser's
    # call (passthrough media only); what the conversation replay may spend; how early a
    # session known to expire is replaced.
    continuity: bool = False
    replay_tokens: int = 8000
    continuity_lead: float = 60.0
    # The browser leg's sockets in ice_port_range, for readiness (shared by every call).
    port_usage: PortUsage | None = None


@dataclass(frozen=True)
class CallServices:
    """What every call of a gateway shares: made once at startup from the settings."""

    metrics: Metrics = field(default_factory=Metrics)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    hooks: Hooks = field(default_factory=Hooks)
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    tool_timeout: float = 10.0
    transcripts_dir: Path | None = None
    # Records calls when GATEWAY_RECORDINGS_DIR is set.
    recordings: Recordings | None = None
    # Work a call leaves behind (hanging up an upstream session a refused setup had dialled).
    background: TaskSet = field(default_factory=TaskSet)
    # What tokens cost, by model (replaced when the apps file is reloaded).
    prices: PriceTable = field(default_factory=PriceTable)
    # Counts each response's cost against its app's budgets (None: spend is not kept).
    budgets: BudgetKeeper | None = None


async def open_call(
    call_id: str,
    request: CallRequest,
    *,
    upstreams: UpstreamFactory,
    options: LegOptions,
    services: CallServices,
    started_at: float | None = None,
) -> Call:
    """Answer the browser and dial the upstream concurrently; return a call ready to run.

    Raises a :class:`~gateway.errors.GatewayError` (bad offer, no port, upstream refused,
    timeout) with nothing left open: an upstream session already made is hung up.
    """
    from gateway.call.call import Call

    started_at = time.monotonic() if started_at is None else started_at
    offer = inspect_offer(request.offer_sdp)
    codec = choose_codec(offer.audio_codecs)
    if codec is None:
        raise InvalidOffer(
            "The SDP offer has no audio codec the gateway can relay: offer Opus, PCMU or PCMA."
        )
    media = MediaPath(options.media, codec)
    recorder = None
    if services.recordings is not None:
        # Tapped from the first packet; kept or dropped once the call starts (should_record).
        recorder = services.recordings.begin(call_id, media.codec_name, started_at)
        media.add_tap(recorder.tap)
    browser = Peer(
        "browser",
        ice_addresses=options.ice_addresses,
        ice_servers=options.ice_servers,
        relay_only=options.relay_only,
        port_range=options.ice_port_range,
        public_ip=options.public_ip,
        max_message=BROWSER_MAX_MESSAGE,
        port_usage=options.port_usage,
    )
    upstream = upstreams(media)
    asked = request.session if request.upstream_session is None else request.upstream_session
    dial = asyncio.ensure_future(upstream.connect(asked))
    try:
        answer_sdp = await browser.answer(request.offer_sdp, media)
        # Shielded: a setup cancelled here must not abort a request the upstream may have acted
        # on; the failure path below waits for it instead.
        await asyncio.shield(dial)
    except BaseException:
        media.finish()
        if not dial.done():
            services.background.spawn(_end_when_dialled(dial, upstream), name="call-abandon")
        else:
            if not dial.cancelled():
                dial.exception()  # retrieved: the error being raised is the one that matters
            await end_session(upstream)
        await browser.close()
        raise
    link = UpstreamLink(upstream)
    return Call(
        call_id=call_id,
        request=request,
        browser=browser,
        link=link,
        media=media,
        options=options,
        answer_sdp=answer_sdp,
        services=services,
        pipeline=make_pipeline(
            call_id,
            request,
            link,
            services,
            to_browser=browser.send,
            recorder=recorder,
            continuity=options.continuity,
        ),
        created_at=started_at,
        upstreams=upstreams,
        recorder=recorder,
    )


async def _end_when_dialled(dial: asyncio.Future[None], upstream: Upstream) -> None:
    """A refused setup's dial still in flight: let it finish, then end what it made."""
    try:
        await dial  # bounded by the upstream's own timeout
    except Exception:
        pass
    await end_session(upstream)


def make_pipeline(
    call_id: str,
    request: CallRequest,
    link: UpstreamLink,
    services: CallServices,
    *,
    to_browser: Reply,
    recorder: CallRecorder | None = None,
    continuity: bool = False,
) -> EventPipeline:
    info = CallInfo(
        call_id=call_id,
        upstream_call_id=link.current.session_id,
        dialect=request.dialect,
        session=request.session,
        started_at=time.time(),
        app=request.app,
    )
    transcript = (
        TranscriptWriter(services.transcripts_dir, call_id)
        if services.transcripts_dir is not None
        else None
    )
    pipeline_ref: list[EventPipeline] = []
    tools: ToolCoordinator | LiveToolCoordinator | None = None
    timeout = services.tool_timeout

    def runner(tool: Tool, arguments: str) -> Coroutine[Any, Any, ToolResult]:
        return run_tool(tool, arguments, default_timeout=timeout)

    def on_result(call: ServerCall, result: ToolResult) -> None:
        pipeline_ref[0].tool_finished(call, result)

    def send(event: Event) -> None:
        link.send(encode_event(event))

    # A Live model calls functions only through its Responses delegate (its delegation type
    # is fixed at creation); other Live sessions, and translations, have no calls to run.
    if len(services.tools) > 0 and request.dialect in ("ga", "beta"):
        tools = ToolCoordinator(services.tools, send, runner=runner, on_result=on_result)
    elif len(services.tools) > 0 and delegates_to_responses(request.session):
        tools = LiveToolCoordinator(services.tools, send, runner=runner, on_result=on_result)
    pipeline = EventPipeline(
        info=info,
        dialect=request.dialect,
        metrics=services.metrics,
        policy=ClientPolicy(request.policy or services.policy, server_session=info.session),
        hooks=services.hooks,
        tools=tools,
        transcript=transcript,
        recorder=recorder,
        to_browser=to_browser,
        continuity=continuity,
        prices=services.prices,
        on_spend=spend_counter(request, services, pipeline_ref),
    )
    pipeline_ref.append(pipeline)
    return pipeline


def spend_counter(
    request: CallRequest, services: CallServices, pipeline_ref: list[EventPipeline]
) -> Callable[[Spend], None] | None:
    """Counts each response's cost against the call's app's budgets, off the event path; a
    call whose app ends its calls at the budget is told so through its pipeline."""
    budgets = services.budgets
    if budgets is None:
        return None

    async def record(spend: Spend) -> None:
        try:
            over = await budgets.record(spend, request.budget)
        except GatewayError as exc:  # the shared store is down: this response goes uncounted
            log.warning("budget.record_failed", app=spend.app, code=exc.code)
            return
        if over and request.budget.end_calls and pipeline_ref:
            pipeline_ref[0].over_budget.set()

    def count(spend: Spend) -> None:
        services.background.spawn(record(spend), name="budget-record")

    return count
