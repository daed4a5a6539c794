"""Why a call ended, what that means for operators, and what the browser is told.

Every end of a call has an :class:`EndReason`; each reason maps to one outcome (the bounded
label of ``realtime_gateway_sessions_total``) and, when the browser is still there to hear it,
a farewell: an OpenAI-shaped ``error`` event sent before its peer is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

Outcome = Literal[
    "completed", "browser_gone", "upstream_error", "rejected", "timeout", "shutdown", "failed"
]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "completed",
    "browser_gone",
    "upstream_error",
    "rejected",
    "timeout",
    "shutdown",
    "failed",
)


class EndReason(StrEnum):
    HANGUP = "hangup"
    TOKEN_REUSED = "token_reused"
    SHUTDOWN = "shutdown"
    CONNECT_TIMEOUT = "connect_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION = "max_duration"
    BROWSER_VANISHED = "browser_vanished"
    BROWSER_CHANNEL_CLOSED = "browser_channel_closed"
    BROWSER_CONNECTION_FAILED = "browser_connection_failed"
    BROWSER_CONNECTION_CLOSED = "browser_connection_closed"
    BROWSER_CLOSED = "browser_closed"
    UPSTREAM_VANISHED = "upstream_vanished"
    UPSTREAM_CHANNEL_CLOSED = "upstream_channel_closed"
    UPSTREAM_CONNECTION_FAILED = "upstream_connection_failed"
    UPSTREAM_CONNECTION_CLOSED = "upstream_connection_closed"
    UPSTREAM_CLOSED = "upstream_closed"
    SESSION_CLOSED = "session_closed"
    """A Live session closed as asked (``session.close``): said in ``session.closed``."""
    SESSION_EXPIRED = "session_expired"
    """The upstream session reached its time limit, and said so (Live's ``session.closed``,
    Realtime's ``session_expired`` error), so the browser has heard why."""
    BUDGET_SPENT = "budget_spent"
    """The call's app spent a budget it ends its calls at."""
    INTERNAL_ERROR = "internal_error"

    @classmethod
    def of_leg(cls, leg: Literal["browser", "upstream"], why: str | None) -> EndReason:
        """The reason for ``leg`` ending by itself (``why``: the leg's own end reason)."""
        try:
            return cls(f"{leg}_{why}")
        except ValueError:
            return cls(f"{leg}_closed")


@dataclass(frozen=True)
class Farewell:
    message: str
    code: str


_UPSTREAM_ENDED: Final = Farewell("The upstream ended the call.", "upstream_ended")

_TABLE: Final[dict[EndReason, tuple[Outcome, Farewell | None]]] = {
    EndReason.HANGUP: ("completed", None),
    EndReason.TOKEN_REUSED: ("rejected", None),
    EndReason.SHUTDOWN: (
        "shutdown",
        Farewell("The gateway is shutting down; reconnect to continue.", "gateway_shutdown"),
    ),
    EndReason.CONNECT_TIMEOUT: (
        "timeout",
        Farewell("The call could not be connected in time.", "connect_timeout"),
    ),
    EndReason.IDLE_TIMEOUT: (
        "timeout",
        Farewell("The call was idle too long and has been ended.", "idle_timeout"),
    ),
    EndReason.MAX_DURATION: (
        "timeout",
        Farewell("The call reached its maximum duration.", "max_duration"),
    ),
    EndReason.BROWSER_VANISHED: ("browser_gone", None),
    EndReason.BROWSER_CHANNEL_CLOSED: ("browser_gone", None),
    EndReason.BROWSER_CONNECTION_FAILED: ("browser_gone", None),
    EndReason.BROWSER_CONNECTION_CLOSED: ("browser_gone", None),
    EndReason.BROWSER_CLOSED: ("browser_gone", None),
    EndReason.UPSTREAM_VANISHED: ("upstream_error", _UPSTREAM_ENDED),
    EndReason.UPSTREAM_CHANNEL_CLOSED: ("upstream_error", _UPSTREAM_ENDED),
    EndReason.UPSTREAM_CONNECTION_FAILED: ("upstream_error", _UPSTREAM_ENDED),
    EndReason.UPSTREAM_CONNECTION_CLOSED: ("upstream_error", _UPSTREAM_ENDED),
    EndReason.UPSTREAM_CLOSED: ("upstream_error", _UPSTREAM_ENDED),
    # The browser has heard why from session.closed itself.
    EndReason.SESSION_CLOSED: ("completed", None),
    EndReason.SESSION_EXPIRED: ("timeout", None),
    EndReason.BUDGET_SPENT: (
        "timeout",
        Farewell(
            "You exceeded your current quota: this app's budget is spent, so the call has ended.",
            "insufficient_quota",
        ),
    ),
    EndReason.INTERNAL_ERROR: (
        "failed",
        Farewell(
            "The call ended because of an error in the gateway; reconnect to continue.",
            "gateway_error",
        ),
    ),
}


def outcome_of(reason: EndReason) -> Outcome:
    return _TABLE[reason][0]


def farewell_for(reason: EndReason) -> Farewell | None:
    return _TABLE[reason][1]
