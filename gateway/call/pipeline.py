"""What happens to each event of a call on its way through the gateway, in order.

Browser → upstream: parse (malformed → ``error`` event) → beta→GA translation → policy (refuse
→ ``error`` event, or rewrite) → ``on_client_event`` hook → server-tool merge → sent.
Upstream → browser: parse → metrics and usage → transcript → server-tool interception → hook →
GA→beta translation → sent. An event nothing changed leaves as the exact bytes that came in.

A refused client event is answered with an ``error`` event and logged once
(``call.client_event_rejected``); a policy rewrite that changed something is logged as
``policy.violation``. Both lines go through one :class:`LogThrottle` per call, so a browser that
floods refused events cannot flood the logs; the metrics and the call's stats still count
every one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from gateway.errors import GatewayError
from gateway.hooks import CallInfo, Hooks
from gateway.metrics import Metrics, responses_tokens, tokens_by_kind
from gateway.policy import ClientPolicy
from gateway.pricing import PriceTable, Usage
from gateway.protocol import beta
from gateway.protocol.catalog import label_for
from gateway.protocol.events import (
    client_event_id,
    encode_event,
    error_event,
    parse_client_event,
    parse_event,
)
from gateway.protocol.live import DATA_CHANNEL_COMMANDS, LiveGate, live_error_event
from gateway.recording import CallRecorder
from gateway.tools import ToolResult
from gateway.tools.coordinator import ServerCall, ToolCoordinator
from gateway.tools.live import LiveToolCoordinator
from gateway.transcripts import TranscriptBuilder, TranscriptWriter
from gateway.types import Event, Message, Reply

log = structlog.get_logger(__name__)

# The Responses stream events that end a delegate's response (and carry its usage).
_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Seconds a call's end waits for its transcript to reach the disk.
TRANSCRIPT_CLOSE_TIMEOUT = 5.0


class LogThrottle:
    """Whether the next line of a call may be logged: ``burst`` lines at once, then one per
    ``interval`` seconds (a token bucket). Counts the lines it holds back."""

    def __init__(
        self,
        burst: int = 5,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or not interval > 0:
            raise ValueError(
                f"'burst' must be at least 1 and 'interval' positive (got {burst}, {interval})"
            )
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._tokens = float(burst)
        self._refilled_at = clock()
        self.suppressed = 0
        """Lines held back since the last one let through."""

    def take(self) -> int | None:
        """The count suppressed before this line if it may be logged (and the count restarts),
        or ``None`` if it is held back."""
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)
        self._refilled_at = max(self._refilled_at, now)
        self._tokens = min(float(self._burst), self._tokens + elapsed / self._interval)
        if self._tokens >= 1.0 - 1e-9:  # float time deltas must not lose a whole token
            self._tokens = max(0.0, self._tokens - 1.0)
            suppressed, self.suppressed = self.suppressed, 0
            return suppressed
        self.suppressed += 1
        return None


@dataclass
class PipelineStats:
    client_events: int = 0
    server_events: int = 0
    client_errors: int = 0
    policy_violations: int = 0
    tool_calls: int = 0
    speech_started: int = 0
    # A Live session's voice seconds so far (session.usage.updated is cumulative).
    voice_seconds: float = 0.0
    # Why the upstream said it is closing, once it has: a Live session.closed's reason, or
    # "expired" for a Realtime session_expired error.
    session_closed: str | None = None
    # True between response.created and response.done: the assistant is busy, not idle.
    responding: bool = False
    tokens: dict[str, int] = field(default_factory=dict)
    # USD so far (usage x the price table); None while the call's model has no price.
    cost_usd: float | None = None


class EventPipeline:
    def __init__(
        self,
        *,
        info: CallInfo,
        dialect: str,
        metrics: Metrics,
        policy: ClientPolicy,
        hooks: Hooks,
        tools: ToolCoordinator | LiveToolCoordinator | None,
        transcript: TranscriptWriter | None,
        to_browser: Reply,
        recorder: CallRecorder | None = None,
        log_throttle: LogThrottle | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.info = info
        self._prices = prices if prices is not None else PriceTable()
        self._beta = dialect == "beta"
        # A Live session: its own rules at the browser's edge, in place of Realtime's policy.
        self._live = LiveGate(info.session, info.call_id) if dialect == "live" else None
        # A Live frontend is held to the call's size and rate limits as a Realtime browser is:
        # the same policy over Live's commands, without Realtime's locks (the gate has its own).
        self._live_limits = (
            ClientPolicy(
                replace(
                    policy.config,
                    allowed_client_events=DATA_CHANNEL_COMMANDS,
                    locked_session_fields=(),
                )
            )
            if dialect == "live"
            else None
        )
        self._followups: list[Message] = []
        self._metrics = metrics
        self._policy = policy
        self._hooks = hooks
        self.tools = tools
        self.transcript = transcript
        self.recorder = recorder
        # The transcript's records go to the transcript file and to the one beside a recording.
        wants_records = transcript is not None or recorder is not None
        self._builder = TranscriptBuilder() if wants_records else None
        self._live_turns = (
            self._builder.live() if self._builder is not None and dialect == "live" else None
        )
        self._to_browser = to_browser
        self.stats = PipelineStats()
        self._log_throttle = log_throttle or LogThrottle()
        # The session as the upstream last reported it: what locked fields are compared with.
        self.session: dict[str, Any] = dict(info.session)

    @property
    def model(self) -> str | None:
        """The call's model, as its session has it now."""
        model = self.session.get("model")
        return model if isinstance(model, str) else None

    @property
    def cost_usd(self) -> float | None:
        """USD so far; ``None`` while nothing was priced and the model has no price."""
        if self.stats.cost_usd is None and self._prices.price_of(self.model) is not None:
            return 0.0
        return self.stats.cost_usd

    # -- browser → upstream -------------------------------------------------------------------

    async def client_message(
        self, message: Message, reply: Reply | None = None, *, trusted: bool = False
    ) -> Message | None:
        """The message to send upstream, or None if it was refused or dropped.

        Refusals are answered through ``reply`` (the sideband) or else to the browser.
        ``trusted``: sent by the app's server (a Live sideband), not the browser's frontend.
        """
        self.stats.client_events += 1
        try:
            event = parse_client_event(message)
        except GatewayError as exc:
            self.reject(exc, None, reply)
            return None
        original = event
        self._metrics.event_relayed("client", event["type"], len(message))
        if self._live is not None:
            return await self._live_client_event(event, original, message, reply, trusted)
        if self._beta:
            event = beta.client_event_to_ga(event)
        decision = self._policy.check(event, len(message), current_session=self.session)
        if decision.violation is not None:
            self.stats.policy_violations += 1
            self._metrics.policy_violation(decision.violation.rule)
        if decision.event is None:
            assert decision.violation is not None
            self.reject(decision.violation.to_error(), event, reply)
            return None
        if decision.violation is not None and (suppressed := self._log_throttle.take()) is not None:
            log.info(
                "policy.violation",
                call_id=self.info.call_id,
                rule=decision.violation.rule,
                rewritten=True,
                suppressed=suppressed,
            )
        event = decision.event
        if self._hooks.wants_client_events:
            hooked = await self._hooks.client_event(self.info, event)
            if hooked is None:
                return None
            event = hooked
        if self.tools is not None and self.tools.enabled:
            try:
                event = self.tools.client_event(event)
            except GatewayError as exc:
                self.reject(exc, event, reply)
                return None
        return message if event is original else encode_event(event)

    async def _live_client_event(
        self, event: Event, original: Event, message: Message, reply: Reply | None, trusted: bool
    ) -> Message | None:
        assert self._live is not None
        try:
            self._live.client(event, self.session, frontend=not trusted)
        except GatewayError as exc:
            self.stats.policy_violations += 1
            self._metrics.policy_violation(exc.code or "live_rule")
            self.reject(exc, event, reply)
            return None
        if not trusted and self._live_limits is not None:
            decision = self._live_limits.check(event, len(message), current_session=self.session)
            if decision.violation is not None:
                self.stats.policy_violations += 1
                self._metrics.policy_violation(decision.violation.rule)
                self.reject(decision.violation.to_error(), event, reply)
                return None
        if self._hooks.wants_client_events:
            hooked = await self._hooks.client_event(self.info, event)
            if hooked is None:
                return None
            event = hooked
        if isinstance(self.tools, LiveToolCoordinator):
            try:
                event = self.tools.client_event(event)
            except GatewayError as exc:
                self.reject(exc, event, reply)
                return None
        return message if event is original else encode_event(event)

    # -- upstream → browser -------------------------------------------------------------------

    @property
    def live(self) -> LiveGate | None:
        """A Live session's gate (``None`` on a Realtime call): its sideband shows sessions
        as the gate does and replays the gate's last ``session.started``."""
        return self._live

    def followups(self) -> list[Message]:
        """Events for the browser that follow the last server message (sent after it)."""
        out, self._followups = self._followups, []
        return out

    async def server_message(self, message: Message) -> Message | None:
        """The message to send to the browser, or None if it is hidden from it."""
        self.stats.server_events += 1
        try:
            event = parse_event(message)
        except GatewayError:
            return message  # not ours to judge: the browser gets what the upstream sent
        original = event
        kind = event["type"]
        self._metrics.event_relayed("server", kind, len(message))
        if self._live is not None:
            return await self._live_server_event(event, message)
        if kind in ("session.created", "session.updated") and isinstance(
            event.get("session"), dict
        ):
            self.session = event["session"]
        elif kind == "response.done":
            self._count_usage(event)
            self.stats.responding = False
        elif kind == "response.created":
            self.stats.responding = True
        elif kind == "input_audio_buffer.speech_started":
            self.stats.speech_started += 1
        elif kind == "error" and _error_code(event) == "session_expired":
            # The upstream's time limit: it closes next, and the browser has been told why.
            self.stats.session_closed = "expired"
        if self.recorder is not None:
            self.recorder.observe(event)
        if self._builder is not None:
            for record in self._builder.feed(event):
                self._write_record(record)
        if self.tools is not None and self.tools.enabled:
            hidden = self.tools.server_event(event)
            if hidden is None:
                return None
            event = hidden
        if self._hooks.wants_server_events:
            hooked = await self._hooks.server_event(self.info, event)
            if hooked is None:
                return None
            event = hooked
        if self._beta:
            translated = beta.server_event_to_beta(event)
            if translated is None:
                return None
            event = translated
        return message if event is original else encode_event(event)

    async def _live_server_event(self, event: Event, message: Message) -> Message | None:
        assert self._live is not None
        kind = event["type"]
        if kind in ("session.started", "session.updated") and isinstance(
            event.get("session"), dict
        ):
            self.session = event["session"]
        elif kind == "response.event":
            self._count_delegate_usage(event.get("event"))
        elif kind in ("session.usage.updated", "session.closed"):
            self._count_voice(event.get("usage"))
            if kind == "session.closed":
                reason = event.get("reason")
                self.stats.session_closed = reason if isinstance(reason, str) else "unknown"
        if self._live_turns is not None:
            for record in self._live_turns.feed(event):
                self._write_record(record)
        live_tools = self.tools if isinstance(self.tools, LiveToolCoordinator) else None
        # Every event, before the frontend's allow-lists: a server call runs whoever may see it.
        if live_tools is not None and live_tools.server_event(event) is None:
            return None
        shown = self._live.server(event)
        if not shown:
            return None
        first, *rest = shown
        if live_tools is not None:
            # The browser's copy only: the gate's replay for a sideband (trusted, as OpenAI
            # sends it everything) keeps the session as the upstream reported it.
            first = live_tools.shown(first)
        self._followups += [encode_event(extra) for extra in rest]
        if self._hooks.wants_server_events:
            hooked = await self._hooks.server_event(self.info, first)
            if hooked is None:
                return None
            first = hooked
        return message if first is event else encode_event(first)

    # -- helpers ------------------------------------------------------------------------------

    def reject(
        self,
        error: GatewayError,
        event: Event | None,
        reply: Reply | None = None,
    ) -> None:
        """Answer a refused client event with an OpenAI-shaped ``error`` event."""
        self.stats.client_errors += 1
        if (suppressed := self._log_throttle.take()) is not None:
            kind = event.get("type") if event is not None else None
            log.info(
                "call.client_event_rejected",
                call_id=self.info.call_id,
                code=error.code,
                # Bounded: the type is the browser's to choose, and could be any length.
                event_type=label_for(kind) if isinstance(kind, str) else None,
                suppressed=suppressed,
            )
        echo = client_event_id(event) if event is not None else None
        shape = error_event if self._live is None else live_error_event
        (reply or self._to_browser)(encode_event(shape(error, client_event_id=echo)))

    def _count_usage(self, event: Event) -> None:
        response = event.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return
        by_kind = tokens_by_kind(usage)
        cost = self._prices.cost(self.model, Usage.from_realtime(usage))
        label = self._prices.label(self.model)
        self._metrics.tokens(by_kind, app=self.info.app, model=label, cost_usd=cost)
        for kind, value in by_kind.items():
            self.stats.tokens[kind] = self.stats.tokens.get(kind, 0) + value
        if cost is not None:
            self.stats.cost_usd = (self.stats.cost_usd or 0.0) + cost

    def _count_delegate_usage(self, nested: Any) -> None:
        """A Live session's Responses delegate bills tokens: its usage comes once, when one of
        its responses ends."""
        if not isinstance(nested, dict) or nested.get("type") not in _RESPONSE_ENDS:
            return
        response = nested.get("response")
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return
        by_kind = responses_tokens(usage)
        self._metrics.tokens(by_kind, app=self.info.app, model=self._prices.label(self.model))
        for kind, value in by_kind.items():
            self.stats.tokens[kind] = self.stats.tokens.get(kind, 0) + value

    def _count_voice(self, usage: Any) -> None:
        """Live's usage is a running total: count what it grew by, never the total again."""
        seconds = usage.get("seconds") if isinstance(usage, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return
        if not math.isfinite(seconds):
            return  # an upstream's Infinity would poison the counter for good
        if seconds > self.stats.voice_seconds:
            self._metrics.voice_seconds(seconds - self.stats.voice_seconds)
            self.stats.voice_seconds = float(seconds)

    def _write_record(self, record: Mapping[str, Any]) -> None:
        if self.transcript is not None:
            self.transcript.write(record)
        if self.recorder is not None:
            self.recorder.record(record)

    def tool_finished(self, call: ServerCall, result: ToolResult) -> None:
        """Called by the tool coordinator for every finished server tool call."""
        self.stats.tool_calls += 1
        self._metrics.tool_call(call.name, result.status, result.seconds)
        if self._builder is not None:
            self._write_record(
                self._builder.tool_call(
                    call_id=call.call_id,
                    name=call.name,
                    arguments=call.arguments,
                    output=result.output,
                    status=result.status,
                    seconds=result.seconds,
                )
            )

    async def open_transcript(self) -> None:
        if self.transcript is not None:
            await self.transcript.start()
        if self._builder is not None:
            self._write_record(
                self._builder.call_started(
                    self.info.call_id, self.info.upstream_call_id, self.info.session
                )
            )

    def end_records(self, *, reason: str, outcome: str, duration_s: float) -> None:
        """The transcript's last records: pending corrections and the end of the call."""
        if self._live_turns is not None:
            for record in self._live_turns.flush():
                self._write_record(record)
        if self._builder is not None:
            for record in self._builder.call_ended(
                reason=reason,
                outcome=outcome,
                duration_s=duration_s,
                app=self.info.app,
                cost_usd=self.cost_usd,
            ):
                self._write_record(record)

    async def close_transcript(self) -> None:
        """Flush and close the transcript file.

        Waits at most :data:`TRANSCRIPT_CLOSE_TIMEOUT`: a hung disk must not keep the call (and a
        drain waiting for it) alive. The writer's own task goes on and writes what it holds if
        the disk comes back.
        """
        if self.transcript is not None:
            try:
                async with asyncio.timeout(TRANSCRIPT_CLOSE_TIMEOUT):
                    await self.transcript.aclose()
            except TimeoutError:
                log.warning(
                    "transcript.close_timeout",
                    call_id=self.info.call_id,
                    pending=self.transcript.pending,
                    timeout_s=TRANSCRIPT_CLOSE_TIMEOUT,
                )


def _error_code(event: Event) -> object:
    error = event.get("error")
    return error.get("code") if isinstance(error, dict) else None
