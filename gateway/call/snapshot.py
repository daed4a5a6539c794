"""What a call looks like at one moment: one projection for the ``call.ended`` line, the hooks'
summary and the admin view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.apps import DEFAULT_APP
from gateway.hooks import CallSummary


@dataclass(frozen=True)
class CallSnapshot:
    call_id: str
    upstream_call_id: str | None
    dialect: str
    media: str
    duration_s: float
    state: Mapping[str, str]
    """Each leg's transport state (``browser``, ``upstream``)."""
    client_events: int
    server_events: int
    client_errors: int
    policy_violations: int
    tool_calls: int
    tokens: Mapping[str, int]
    audio_packets: Mapping[str, int]
    """Packets per ``{leg}_{direction}``; ``in`` is what that leg sent."""
    audio_dropped: Mapping[str, int]
    """Stale audio dropped while the far leg was not yet consuming (bounded queues)."""
    messages_dropped: Mapping[str, int]
    """Data-channel messages lost per leg (sent after its end, or beyond a full queue)."""
    transcript_dropped: int | None
    """Records a stalled disk made the transcript drop (None: no transcript)."""
    recording: Mapping[str, Any] | None = None
    """Whether the call was recorded and what the recording left out (None: recording off)."""
    reason: str | None = None
    outcome: str | None = None
    voice_seconds: float | None = None
    """A Live session's voice seconds, as its upstream last reported them (None: Realtime)."""
    upstream_sessions: int = 1
    """Upstream sessions that carried the call (more than one: continuity replaced some)."""
    upstream_call_ids: tuple[str, ...] = ()
    """Their ids, oldest first."""
    app: str = DEFAULT_APP
    model: str | None = None
    cost_usd: float | None = None
    """USD so far, usage x the price table (None: the model has no price)."""

    def log_fields(self) -> dict[str, Any]:
        """The fields of the ``call.ended`` log line."""
        return {
            "call_id": self.call_id,
            "upstream_call_id": self.upstream_call_id,
            "app": self.app,
            "model": self.model,
            "reason": self.reason,
            "outcome": self.outcome,
            "duration_s": round(self.duration_s, 3),
            "client_events": self.client_events,
            "server_events": self.server_events,
            "client_errors": self.client_errors,
            "policy_violations": self.policy_violations,
            "tool_calls": self.tool_calls,
            "tokens": dict(self.tokens),
            "cost_usd": self.cost_usd,
            "audio_packets": dict(self.audio_packets),
            "audio_dropped": dict(self.audio_dropped),
            "messages_dropped": dict(self.messages_dropped),
            "transcript_dropped": self.transcript_dropped,
            "upstream_sessions": self.upstream_sessions,
            **(
                {"upstream_call_ids": list(self.upstream_call_ids)}
                if self.upstream_sessions > 1
                else {}
            ),
            **(dict(self.recording) if self.recording is not None else {}),
            **({"voice_seconds": self.voice_seconds} if self.voice_seconds is not None else {}),
        }

    def summary(self) -> CallSummary:
        """What ``on_session_end`` hooks get."""
        return CallSummary(
            reason=self.reason or "",
            outcome=self.outcome or "",
            duration_s=self.duration_s,
            client_events=self.client_events,
            server_events=self.server_events,
            tokens=dict(self.tokens),
            tool_calls=self.tool_calls,
            cost_usd=self.cost_usd,
        )

    def view(self) -> dict[str, Any]:
        """The admin API's ``realtime.call`` object."""
        return {
            "id": self.call_id,
            "object": "realtime.call",
            "upstream_call_id": self.upstream_call_id,
            "app": self.app,
            "model": self.model,
            "dialect": self.dialect,
            "media": self.media,
            "age_s": round(self.duration_s, 3),
            "state": dict(self.state),
            "events": {
                "client": self.client_events,
                "server": self.server_events,
                "client_errors": self.client_errors,
                "policy_violations": self.policy_violations,
            },
            "tool_calls": self.tool_calls,
            "usage": dict(self.tokens)
            if self.voice_seconds is None
            else {"seconds": self.voice_seconds},
            "cost_usd": self.cost_usd,
            "audio_packets": dict(self.audio_packets),
            "upstream_sessions": self.upstream_sessions,
        }
