"""The state a gateway shares across requests, and across processes when there are several.

Each store is a small async interface; :mod:`gateway.stores.memory` implements all of them in
one process. Callers never learn which implementation they hold. Nothing here is on the media
path: stores are consulted when a secret is minted or redeemed, a call is opened, listed,
found or ended.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.client_secrets import ClientSecret
from gateway.config.apps import DEFAULT_APP
from gateway.stores.spend import MemorySpendLedger, SpendLedger


class SecretStore(Protocol):
    """Client secrets (``ek_…``): minted by the app's backend, redeemed by one browser call."""

    async def mint(
        self, session: dict[str, Any], ttl: int, app: str = DEFAULT_APP
    ) -> tuple[str, ClientSecret]:
        """A new secret of ``app`` and its record; :class:`~gateway.errors.RateLimited` at the
        cap."""

    async def peek(self, token: str) -> ClientSecret:
        """The secret behind ``token``, unconsumed;
        :class:`~gateway.errors.AuthenticationError` if unknown or expired."""

    async def redeem(self, token: str) -> ClientSecret:
        """Like :meth:`peek`, and consumes a single-use secret atomically: of two concurrent
        redeems, wherever they run, one wins and the other gets the authentication error."""

    async def count(self) -> int:
        """Secrets outstanding (minted, not yet used or expired)."""


class RateWindows(Protocol):
    """Sliding one-window counts of attempts per key (call rates per address, per secret)."""

    async def hit(self, scope: str, key: str, limit: int, window: float = 60.0) -> float | None:
        """Count one attempt of ``key`` in ``scope``: ``None`` if within ``limit`` per
        ``window`` seconds, else the seconds until the next attempt would be."""


@dataclass(frozen=True)
class CallEntry:
    """A live call as the whole gateway knows it: who owns it and how to reach them."""

    call_id: str
    owner: str
    """The process (node) running the call."""
    address: str
    """Where other processes reach the owner (``http://host:port``); empty when alone."""
    dialect: str
    started_at: float
    """Unix time."""
    token_digest: str | None = None
    """Hex SHA-256 of the client secret that opened it (its browser may hang it up)."""
    upstream_call_id: str | None = None
    app: str = DEFAULT_APP
    """The app the call is for (only its key, or the single key, may see it)."""


class CallDirectory(Protocol):
    """Every live call of the gateway, whichever process runs it.

    Entries are kept alive by their owner (:meth:`refresh`, every few seconds): a process that
    dies without unregistering its calls has them leave the directory within seconds.
    """

    async def register(self, entry: CallEntry) -> None: ...

    async def refresh(self, entries: list[CallEntry]) -> None:
        """The owner's calls are still live (and are entered again if they were lost)."""

    async def unregister(self, call_id: str) -> None: ...

    async def lookup(self, call_id: str) -> CallEntry | None: ...

    async def entries(self) -> list[CallEntry]: ...


@dataclass(frozen=True)
class NodeEntry:
    """A gateway process, as the others know it."""

    name: str
    address: str
    """Where the others reach it (``http://host:port``)."""
    group: str = ""
    """The processes of one host's ``serve --workers`` share a group (one scrape sums them)."""
    started_at: float = 0.0
    room: bool = True
    """It could take a call at its last heartbeat (below capacity, media ports free)."""


class NodeDirectory(Protocol):
    """The live gateway processes; each refreshes its own entry every few seconds."""

    async def announce(self, node: NodeEntry) -> None: ...

    async def withdraw(self, name: str) -> None: ...

    async def nodes(self) -> list[NodeEntry]: ...


class RecordingIndex(Protocol):
    """Which process holds each finished recording, so any process can serve its download."""

    async def place(self, call_id: str, node: str, ttl: float) -> None:
        """``node`` holds ``call_id``'s recording for ``ttl`` seconds (0: with no end)."""

    async def locate(self, call_id: str) -> str | None:
        """The node holding ``call_id``'s recording, if one does."""


class Health(Protocol):
    """Whether the stores can be reached now (what readiness reports)."""

    @property
    def healthy(self) -> bool: ...

    async def check(self) -> bool:
        """Try the stores now; updates :attr:`healthy`."""


@dataclass(frozen=True)
class Stores:
    """The stores one gateway uses, made once where the app is built."""

    secrets: SecretStore
    rates: RateWindows
    calls: CallDirectory
    nodes: NodeDirectory
    recordings: RecordingIndex
    health: Health
    spend: SpendLedger = field(default_factory=MemorySpendLedger)
    """What each app spent (budgets, the usage report)."""
    shared: bool = False
    """Shared with other processes (so calls may live elsewhere, and be forwarded to)."""
    closer: Callable[[], Awaitable[None]] | None = None

    async def close(self) -> None:
        """Release connections (the stores themselves live on, in Redis)."""
        await self.spend.aclose()
        if self.closer is not None:
            await self.closer()
