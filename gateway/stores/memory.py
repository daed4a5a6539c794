"""The stores in this process's memory: the default, when one process is the gateway."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.client_secrets import (
    DEFAULT_MAX_OUTSTANDING,
    ClientSecret,
    expired_secret,
    new_token,
    token_digest,
    too_many_secrets,
    unknown_secret,
)
from gateway.config.apps import DEFAULT_APP
from gateway.ratelimit import SlidingWindow
from gateway.stores.base import CallEntry, NodeEntry, Stores

# At the cap, expired secrets are looked for everywhere at most this often (seconds): a full
# scan costs milliseconds at 100k, and a mint flood must not pay it for every request.
FULL_PURGE_INTERVAL = 1.0


class MemorySecretStore:
    """Client secrets in a dict; single-use unless configured otherwise.

    At most ``max_outstanding`` secrets are kept. Expired ones are dropped from the oldest end
    at every mint (amortised constant time: secrets are kept in the order they were minted),
    and from everywhere when the cap is reached.
    """

    def __init__(
        self,
        *,
        single_use: bool = True,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._single_use = single_use
        self._max = max_outstanding
        self._clock = clock
        self._secrets: OrderedDict[bytes, ClientSecret] = OrderedDict()
        self._full_purge_at = float("-inf")

    async def count(self) -> int:
        return len(self._secrets)

    async def mint(
        self, session: dict[str, Any], ttl: int, app: str = DEFAULT_APP
    ) -> tuple[str, ClientSecret]:
        self._purge()
        if len(self._secrets) >= self._max:
            raise too_many_secrets(self._max)
        token = new_token()
        now = self._clock()
        secret = ClientSecret(
            digest=token_digest(token),
            created_at=now,
            expires_at=int(now + ttl),
            session=session,
            app=app,
        )
        self._secrets[secret.digest] = secret
        return token, secret

    async def peek(self, token: str) -> ClientSecret:
        return self._find(token)

    async def redeem(self, token: str) -> ClientSecret:
        # No await between the lookup and the removal: atomic on one event loop.
        secret = self._find(token)
        if self._single_use:
            del self._secrets[secret.digest]
        return secret

    def _find(self, token: str) -> ClientSecret:
        digest = token_digest(token)
        secret = self._secrets.get(digest)
        if secret is None:
            raise unknown_secret()
        if self._clock() >= secret.expires_at:
            del self._secrets[digest]
            raise expired_secret()
        return secret

    def _purge(self) -> None:
        now = self._clock()
        while self._secrets:
            digest, oldest = next(iter(self._secrets.items()))
            if now < oldest.expires_at:
                break
            del self._secrets[digest]
        if len(self._secrets) >= self._max and now - self._full_purge_at >= FULL_PURGE_INTERVAL:
            # Secrets minted with different TTLs expire out of order: look behind the oldest.
            self._full_purge_at = now
            for digest in [d for d, s in self._secrets.items() if now >= s.expires_at]:
                del self._secrets[digest]


class MemoryRateWindows:
    """Sliding windows per (scope, limit, window), each bounded in the keys it tracks."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[tuple[str, int, float], SlidingWindow] = {}

    async def hit(self, scope: str, key: str, limit: int, window: float = 60.0) -> float | None:
        slot = (scope, limit, window)
        sliding = self._windows.get(slot)
        if sliding is None:
            sliding = self._windows[slot] = SlidingWindow(limit, window, clock=self._clock)
        return sliding.hit(key)


class MemoryCallDirectory:
    """The live calls of this one process."""

    def __init__(self) -> None:
        self._entries: dict[str, CallEntry] = {}

    async def register(self, entry: CallEntry) -> None:
        self._entries[entry.call_id] = entry

    async def refresh(self, entries: list[CallEntry]) -> None:
        for entry in entries:
            self._entries[entry.call_id] = entry

    async def unregister(self, call_id: str) -> None:
        self._entries.pop(call_id, None)

    async def lookup(self, call_id: str) -> CallEntry | None:
        return self._entries.get(call_id)

    async def entries(self) -> list[CallEntry]:
        return list(self._entries.values())


class MemoryNodeDirectory:
    """This process alone."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeEntry] = {}

    async def announce(self, node: NodeEntry) -> None:
        self._nodes[node.name] = node

    async def withdraw(self, name: str) -> None:
        self._nodes.pop(name, None)

    async def nodes(self) -> list[NodeEntry]:
        return list(self._nodes.values())


class MemoryRecordingIndex:
    """This process alone: the recordings it made, the newest :attr:`limit` of them."""

    limit = 100_000

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}

    async def place(self, call_id: str, node: str, ttl: float) -> None:
        self._entries.pop(call_id, None)
        self._entries[call_id] = (node, self._clock() + ttl if ttl > 0 else float("inf"))
        while len(self._entries) > self.limit:
            del self._entries[next(iter(self._entries))]

    async def locate(self, call_id: str) -> str | None:
        found = self._entries.get(call_id)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._entries[call_id]
            return None
        return found[0]


class AlwaysHealthy:
    """Memory is always there."""

    healthy = True

    async def check(self) -> bool:
        return True


def memory_stores(*, single_use: bool = True, max_secrets: int = DEFAULT_MAX_OUTSTANDING) -> Stores:
    return Stores(
        secrets=MemorySecretStore(single_use=single_use, max_outstanding=max_secrets),
        rates=MemoryRateWindows(),
        calls=MemoryCallDirectory(),
        nodes=MemoryNodeDirectory(),
        recordings=MemoryRecordingIndex(),
        health=AlwaysHealthy(),
    )
