"""Type aliases shared across the gateway (stdlib only, so any layer may import them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

Event: TypeAlias = dict[str, Any]
"""One Realtime event, parsed: a JSON object with a string ``type``."""

Message: TypeAlias = str | bytes
"""One data-channel (or sideband) message, as it travels: text, or bytes that are refused."""

Reply: TypeAlias = Callable[[Message], None]
"""Where an answer to a client message goes (the browser's channel, or a sideband)."""
