"""What happens to each event of a call on its way through the gateway, in order.

Browser → upstream: parse (malformed → ``error`` event) → beta→GA translation → policy (refuse
→ ``error`` event, or rewrite) → ``on_client_event`` hook → server-tool merge → sent.
Upstream → browser: parse → metrics and usage → transcript → server-tool interception → hook →
GA→beta translation → sent. An event nothing changed leaves as the exact bytes that came in.
A GPT-Live session and a Realtime translation call each have a gate of their own at the
browser's edge in place of Realtime's policy, under the same size and rate limits.

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
from typing import Any, cast

import structlog

from gateway.budgets import end_user
from gateway.errors import GatewayError
from gateway.hooks import CallInfo, Hooks
from gateway.metrics import Metrics, responses_tokens, tokens_by_kind
from gateway.policy import ClientPolicy
from gateway.pricing import PriceTable, Usage
from gateway.protocol import beta
from gateway.protocol.catalog import label_for
from gateway.protocol.conversation import Concealer, Conversation, Replay
from gateway.protocol.events import (
    client_event_id,
    encode_event,
    error_event,
    new_event_id,
    parse_client_event,
    parse_event,
)
from gateway.protocol.live import DATA_CHANNEL_COMMANDS, LiveGate, live_error_event
from gateway.protocol.translation import KNOWN_CLIENT_EVENTS, TranslationGate
from gateway.recording import CallRecorder
from gateway.stores.spend import Spend
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
    # True between the upstream's speech_started and speech_stopped: the user is talking.
    speaking: bool = False
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
        continuity: bool = False,
        prices: PriceTable | None = None,
        on_spend: Callable[[Spend], None] | None = None,
    ) -> None:
        self.info = info
        # Continuity (a Realtime call whose upstream session may be replaced): what was said,
        # to seed the next session, and what of the next session the browser must not see.
        keeps = continuity and dialect in ("ga", "beta")
        self.conversation = Conversation() if keeps else None
        self._concealer = Concealer() if keeps else None
        # Set when the upstream says its session expired; with continuity, the error that said
        # so is held here (the browser hears it only if no new session can be had).
        self.expiring = asyncio.Event()
        self.held_expiry: Message | None = None
        self._response_id: str | None = None
        self._playing: str | None = None
        # When the current upstream session expires, on this host's monotonic clock: its
        # session.created's expires_at, read against the wall clock as it arrived.
        self._expires_at: float | None = None
        self._expiry_known = asyncio.Event()
        self.concealed = False
        """Whether the last server event was a seam of a session replacement (not shown to the
        browser, nor to a sideband, which follows the call rather than a session)."""
        self._prices = prices if prices is not None else PriceTable()
        self._on_spend = on_spend
        self._end_user = end_user(info.session)
        # Set when this call's app is over a budget that ends its calls.
        self.over_budget = asyncio.Event()
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
        # A Realtime translation call likewise: its own rules (translation's events, the
        # server's locks refused rather than removed), under the call's size and rate limits.
        translating = dialect == "translation"
        session_id = info.session.get("id")
        self._translation = (
            TranslationGate(
                info.session,
                policy.config.locked_session_fields,
                session_id=session_id if isinstance(session_id, str) else None,
            )
            if translating
            else None
        )
        self._translation_limits = (
            ClientPolicy(
                replace(
                    policy.config,
                    allowed_client_events=KNOWN_CLIENT_EVENTS,
                    locked_session_fields=(),
                )
            )
            if translating
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
        self._translation_segments = (
            self._builder.translation() if self._builder is not None and translating else None
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
        if self._translation is not None:
            return await self._translation_client_event(event, message, reply)
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

    async def _translation_client_event(
        self, event: Event, message: Message, reply: Reply | None
    ) -> Message | None:
        assert self._translation is not None and self._translation_limits is not None
        # The limits first: every event spends from the rate, refused or not. A type they do
        # not know is left to the gate, whose error names the types a translation takes.
        decision = self._translation_limits.check(event, len(message), current_session=self.session)
        violation = decision.violation
        if violation is not None and violation.rule != "event_type_not_allowed":
            self.stats.policy_violations += 1
            self._metrics.policy_violation(violation.rule)
            self.reject(violation.to_error(), event, reply)
            return None
        try:
            self._translation.client(event, self.session)
        except GatewayError as exc:
            self.stats.policy_violations += 1
            self._metrics.policy_violation(exc.code or "translation_rule")
            self.reject(exc, event, reply)
            return None
        if self._hooks.wants_client_events:
            hooked = await self._hooks.client_event(self.info, event)
            if hooked is None:
                return None
            if hooked is not event:
                return encode_event(hooked)
        return message

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
        self.concealed = False
        try:
            event = parse_event(message)
        except GatewayError:
            return message  # not ours to judge: the browser gets what the upstream sent
        original = event
        kind = event["type"]
        self._metrics.event_relayed("server", kind, len(message))
        if self._live is not None:
            return await self._live_server_event(event, message)
        if self._translation is not None:
            return await self._translation_server_event(event, message)
        if kind in ("session.created", "session.updated") and isinstance(
            event.get("session"), dict
        ):
            self.session = event["session"]
            expires_at = self.session.get("expires_at")
            if kind == "session.created" and _finite(expires_at):
                remaining = float(cast(float, expires_at)) - time.time()
                self._expires_at = time.monotonic() + remaining
                self._expiry_known.set()
        elif kind == "response.done":
            self._count_usage(event)
            self.stats.responding = False
            self._response_id = None
        elif kind == "response.created":
            self.stats.responding = True
            response = event.get("response")
            rid = response.get("id") if isinstance(response, dict) else None
            self._response_id = rid if isinstance(rid, str) else None
        elif kind == "input_audio_buffer.speech_started":
            self.stats.speech_started += 1
            self.stats.speaking = True
        elif kind == "input_audio_buffer.speech_stopped":
            self.stats.speaking = False
        elif kind == "output_audio_buffer.started":
            rid = event.get("response_id")
            self._playing = rid if isinstance(rid, str) else ""
        elif kind == "output_audio_buffer.stopped":
            self._playing = None
        elif kind == "error" and _error_code(event) == "session_expired":
            # The upstream's time limit: it closes next. Without continuity the browser is told
            # why; with it, a new session takes over and the error is held back.
            self.stats.session_closed = "expired"
            self.expiring.set()
            if self._concealer is not None:
                self.held_expiry = message
                self.concealed = True
                return None
        if self._concealer is not None and self._concealer.conceals(event):
            self.concealed = True
            if kind == "error":
                log.warning(
                    "continuity.replay_refused",
                    call_id=self.info.call_id,
                    code=_error_code(event) if isinstance(_error_code(event), str) else None,
                )
            return None
        if self.conversation is not None:
            self.conversation.feed(event)
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

    async def _translation_server_event(self, event: Event, message: Message) -> Message | None:
        assert self._translation is not None
        kind = event["type"]
        if kind in ("session.created", "session.updated") and isinstance(
            event.get("session"), dict
        ):
            self.session = event["session"]
        elif kind == "error" and _error_code(event) == "session_expired":
            self.stats.session_closed = "expired"
        elif kind == "session.closed" and self.stats.session_closed is None:
            # A translation's session.closed carries no reason: a session that says it closed
            # (after the client's session.close, or on its own) ended as it should.
            self.stats.session_closed = "close_requested"
        if self._translation_segments is not None:
            for record in self._translation_segments.feed(event):
                self._write_record(record)
        shown = self._translation.shown(event)
        if self._hooks.wants_server_events:
            hooked = await self._hooks.server_event(self.info, shown)
            if hooked is None:
                return None
            shown = hooked
        return message if shown is event else encode_event(shown)

    # -- continuity ---------------------------------------------------------------------------

    def replay(self, budget_tokens: int) -> Replay:
        """The conversation so far, as events seeding a new upstream session; their echoes
        from that session are hidden from the browser."""
        assert self.conversation is not None and self._concealer is not None
        replay = self.conversation.replay(budget_tokens)
        self._concealer.replaying(replay)
        return replay

    async def interrupted(self) -> list[Message]:
        """What the browser must hear of a response the replaced session left unfinished: its
        ``response.done`` (cancelled, as if the client had cancelled it) and the end of its
        audio, through the same steps as any server event (translation, transcript, hooks)."""
        events: list[Event] = []
        if self.stats.responding:
            events.append(
                {
                    "type": "response.done",
                    "event_id": new_event_id(),
                    "response": {
                        "object": "realtime.response",
                        "id": self._response_id,
                        "status": "cancelled",
                        "status_details": {"type": "cancelled", "reason": "client_cancelled"},
                        "output": [],
                        "usage": None,
                    },
                }
            )
        if self._playing is not None:
            events.append(
                {
                    "type": "output_audio_buffer.stopped",
                    "event_id": new_event_id(),
                    "response_id": self._playing or self._response_id,
                }
            )
        out: list[Message] = []
        for event in events:
            message = await self.server_message(encode_event(event))
            if message is not None:
                out.append(message)
            out += self.followups()
        return out

    def session_resumed(self) -> None:
        """A new upstream session carries the call: its expiry is not the call's."""
        self.stats.session_closed = None
        self.stats.speaking = False  # the new session's turn detection starts afresh
        self.held_expiry = None
        self.expiring.clear()
        self._expires_at = None
        self._expiry_known.clear()

    async def session_expiry(self) -> float:
        """When the current upstream session expires (``time.monotonic()``), once it has
        said so."""
        while self._expires_at is None:
            await self._expiry_known.wait()
        return self._expires_at

    @property
    def quiet(self) -> bool:
        """Nobody is talking: no response under way, the user not speaking, no audio playing."""
        return not self.stats.responding and not self.stats.speaking and self._playing is None

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
        if self._on_spend is not None:
            self._on_spend(
                Spend(
                    app=self.info.app,
                    model=label,
                    usd=cost or 0.0,
                    tokens=by_kind,
                    user=self._end_user,
                )
            )

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
        for turns in (self._live_turns, self._translation_segments):
            if turns is not None:
                for record in turns.flush():
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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _error_code(event: Event) -> object:
    error = event.get("error")
    return error.get("code") if isinstance(error, dict) else None
