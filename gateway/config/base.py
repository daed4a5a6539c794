"""The value types settings are made of: secrets that never show themselves, ICE servers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class IceServer:
    """A STUN/TURN server, as the W3C RTCIceServer has it."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: Secret | None = None


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


class Secret:
    """A string that never shows itself in ``repr``/``str``; ``.reveal()`` is the only way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)
