"""The stores in Redis, shared by every gateway process, on one host or many.

Keys carry one hash tag (``{rg}``), so a script that touches several of them stays in one slot.
What must be atomic across processes is a server-side script: minting under the cap, the
single-use redeem (``GETDEL``), a rate window's count-and-add. Call and node entries expire on
their own unless their owner refreshes them, so a process that dies (SIGKILL, OOM) has its calls
leave the directory within :data:`ENTRY_TTL` seconds.

Redis failing is translated once, here, into :class:`~gateway.errors.StoreUnavailable` (503 with
``Retry-After``); nothing of Redis is on the media path, so live calls never notice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
import structlog

from gateway.client_secrets import (
    DEFAULT_MAX_OUTSTANDING,
    ClientSecret,
    expired_secret,
    new_token,
    token_digest,
    too_many_secrets,
    unknown_secret,
)
from gateway.config import ConfigError, Secret
from gateway.config.apps import DEFAULT_APP
from gateway.errors import StoreUnavailable
from gateway.stores.base import CallEntry, NodeEntry, Stores

log = structlog.get_logger(__name__)

PREFIX: Final = "{rg}:"
ENTRY_TTL: Final = 10.0
"""Seconds a call or node entry lives unless refreshed (owners refresh every third of it)."""
REFRESH_INTERVAL: Final = ENTRY_TTL / 3
# Every command gets at most this long: a hung Redis must not hold a request much longer.
SOCKET_TIMEOUT: Final = 2.0

T = TypeVar("T")

_MINT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[6])
return 1
"""

_HIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisHealth:
    """Whether Redis answered the last time anyone asked."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self.healthy = True

    async def check(self) -> bool:
        try:
            await self._client.ping()
        except (redis.exceptions.RedisError, OSError, TimeoutError):
            if self.healthy:
                log.warning("store.unreachable")
            self.healthy = False
        else:
            if not self.healthy:
                log.info("store.reachable")
            self.healthy = True
        return self.healthy


class _Base:
    def __init__(self, client: aioredis.Redis, health: RedisHealth) -> None:
        self._client = client
        self._health = health

    async def _do(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run one store operation; a Redis failure becomes a 503 for the caller."""
        try:
            result = await work()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            if self._health.healthy:
                log.warning("store.failed", error=type(exc).__name__)
            self._health.healthy = False
            raise StoreUnavailable() from None
        self._health.healthy = True
        return result


class RedisSecretStore(_Base):
    def __init__(
        self,
        client: aioredis.Redis,
        health: RedisHealth,
        *,
        single_use: bool = True,
        max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, health)
        self._single_use = single_use
        self._max = max_outstanding
        self._clock = clock
        self._mint = client.register_script(_MINT)

    @staticmethod
    def _key(digest: bytes) -> str:
        return f"{PREFIX}secret:{digest.hex()}"

    async def mint(
        self, session: dict[str, Any], ttl: int, app: str = DEFAULT_APP
    ) -> tuple[str, ClientSecret]:
        token = new_token()
        now = self._clock()
        secret = ClientSecret(
            digest=token_digest(token),
            created_at=now,
            expires_at=int(now + ttl),
            session=session,
            app=app,
        )
        value = json.dumps(
            {"created_at": now, "expires_at": secret.expires_at, "session": session, "app": app},
            separators=(",", ":"),
        )
        keys = [f"{PREFIX}secrets", self._key(secret.digest)]
        args: list[str | int | float] = [
            now,
            secret.expires_at,
            ttl * 1000,
            self._max,
            value,
            secret.digest.hex(),
        ]
        minted = await self._do(lambda: self._mint(keys=keys, args=args))
        if not minted:
            raise too_many_secrets(self._max)
        return token, secret

    async def peek(self, token: str) -> ClientSecret:
        digest = token_digest(token)
        raw = await self._do(lambda: self._client.get(self._key(digest)))
        return self._secret(digest, raw)

    async def redeem(self, token: str) -> ClientSecret:
        digest = token_digest(token)
        key = self._key(digest)
        if not self._single_use:
            return await self.peek(token)
        # GETDEL: of any number of concurrent redeems, in any process, one gets the value.
        raw = await self._do(lambda: self._client.getdel(key))
        secret = self._secret(digest, raw)
        await self._do(lambda: self._client.zrem(f"{PREFIX}secrets", digest.hex()))
        return secret

    async def count(self) -> int:
        index = f"{PREFIX}secrets"

        async def count() -> int:
            await self._client.zremrangebyscore(index, "-inf", self._clock())
            return int(await self._client.zcard(index))

        return await self._do(count)

    def _secret(self, digest: bytes, raw: Any) -> ClientSecret:
        if raw is None:
            raise unknown_secret()
        data = json.loads(raw)
        if self._clock() >= data["expires_at"]:
            raise expired_secret()
        return ClientSecret(
            digest=digest,
            created_at=data["created_at"],
            expires_at=data["expires_at"],
            session=data["session"],
            # Secrets minted before apps existed were the one key's.
            app=data.get("app", DEFAULT_APP),
        )


class RedisRateWindows(_Base):
    def __init__(self, client: aioredis.Redis, health: RedisHealth) -> None:
        super().__init__(client, health)
        self._hit = client.register_script(_HIT)
        self._seq = 0

    async def hit(self, scope: str, key: str, limit: int, window: float = 60.0) -> float | None:
        self._seq += 1
        member = f"{time.time_ns()}:{id(self)}:{self._seq}"
        keys = [f"{PREFIX}rate:{scope}:{limit}:{window:g}:{key}"]
        args: list[str | int | float] = [int(window * 1000), limit, member]
        wait_ms = await self._do(lambda: self._hit(keys=keys, args=args))
        return None if int(wait_ms) < 0 else max(0.0, int(wait_ms) / 1000)


class RedisCallDirectory(_Base):
    _FIELDS: Final = (
        "owner",
        "address",
        "dialect",
        "started_at",
        "token_digest",
        "upstream",
        "app",
    )

    @staticmethod
    def _key(call_id: str) -> str:
        return f"{PREFIX}call:{call_id}"

    async def register(self, entry: CallEntry) -> None:
        await self.refresh([entry])

    async def refresh(self, entries: list[CallEntry]) -> None:
        if not entries:
            return
        expires = (time.time() + ENTRY_TTL) * 1000

        async def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            for entry in entries:
                key = self._key(entry.call_id)
                pipe.hset(
                    key,
                    mapping={
                        "owner": entry.owner,
                        "address": entry.address,
                        "dialect": entry.dialect,
                        "started_at": repr(entry.started_at),
                        "token_digest": entry.token_digest or "",
                        "upstream": entry.upstream_call_id or "",
                        "app": entry.app,
                    },
                )
                pipe.pexpire(key, int(ENTRY_TTL * 1000))
                pipe.zadd(f"{PREFIX}calls", {entry.call_id: expires})
            await pipe.execute()

        await self._do(write)

    async def unregister(self, call_id: str) -> None:
        async def remove() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self._key(call_id))
            pipe.zrem(f"{PREFIX}calls", call_id)
            await pipe.execute()

        await self._do(remove)

    async def lookup(self, call_id: str) -> CallEntry | None:
        fields = await self._do(lambda: self._client.hgetall(self._key(call_id)))
        return _call_entry(call_id, fields)

    async def entries(self) -> list[CallEntry]:
        index = f"{PREFIX}calls"

        async def read() -> list[CallEntry]:
            await self._client.zremrangebyscore(index, "-inf", time.time() * 1000)
            ids = [_text(i) for i in await self._client.zrange(index, 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for call_id in ids:
                pipe.hgetall(self._key(call_id))
            found = await pipe.execute()
            out = [_call_entry(call_id, fields) for call_id, fields in zip(ids, found, strict=True)]
            return [entry for entry in out if entry is not None]

        return await self._do(read)


class RedisNodeDirectory(_Base):
    @staticmethod
    def _key(name: str) -> str:
        return f"{PREFIX}node:{name}"

    async def announce(self, node: NodeEntry) -> None:
        async def write() -> None:
            pipe = self._client.pipeline(transaction=False)
            key = self._key(node.name)
            pipe.hset(
                key,
                mapping={
                    "address": node.address,
                    "group": node.group,
                    "started_at": repr(node.started_at),
                    "room": "1" if node.room else "0",
                },
            )
            pipe.pexpire(key, int(ENTRY_TTL * 1000))
            pipe.zadd(f"{PREFIX}nodes", {node.name: (time.time() + ENTRY_TTL) * 1000})
            await pipe.execute()

        await self._do(write)

    async def withdraw(self, name: str) -> None:
        async def remove() -> None:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self._key(name))
            pipe.zrem(f"{PREFIX}nodes", name)
            await pipe.execute()

        await self._do(remove)

    async def nodes(self) -> list[NodeEntry]:
        index = f"{PREFIX}nodes"

        async def read() -> list[NodeEntry]:
            await self._client.zremrangebyscore(index, "-inf", time.time() * 1000)
            names = [_text(n) for n in await self._client.zrange(index, 0, -1)]
            pipe = self._client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(self._key(name))
            found = await pipe.execute()
            out = []
            for name, fields in zip(names, found, strict=True):
                if fields:
                    data = {_text(k): _text(v) for k, v in fields.items()}
                    out.append(
                        NodeEntry(
                            name=name,
                            address=data.get("address", ""),
                            group=data.get("group", ""),
                            started_at=float(data.get("started_at") or 0),
                            room=data.get("room", "1") == "1",
                        )
                    )
            return out

        return await self._do(read)


class RedisRecordingIndex(_Base):
    @staticmethod
    def _key(call_id: str) -> str:
        return f"{PREFIX}recording:{call_id}"

    async def place(self, call_id: str, node: str, ttl: float) -> None:
        async def write() -> None:
            if ttl > 0:
                await self._client.set(self._key(call_id), node, px=max(1, int(ttl * 1000)))
            else:
                await self._client.set(self._key(call_id), node)

        await self._do(write)

    async def locate(self, call_id: str) -> str | None:
        async def read() -> str | None:
            value = await self._client.get(self._key(call_id))
            return _text(value) if value is not None else None

        return await self._do(read)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _call_entry(call_id: str, fields: Any) -> CallEntry | None:
    if not fields:
        return None
    data = {_text(k): _text(v) for k, v in fields.items()}
    return CallEntry(
        call_id=call_id,
        owner=data.get("owner", ""),
        address=data.get("address", ""),
        dialect=data.get("dialect", "ga"),
        started_at=float(data.get("started_at") or 0),
        token_digest=data.get("token_digest") or None,
        upstream_call_id=data.get("upstream") or None,
        app=data.get("app") or DEFAULT_APP,
    )


# Connections to Redis per process.
MAX_CONNECTIONS: Final = 100


def redis_client(url: Secret) -> aioredis.Redis:
    """A client for ``url``; :class:`~gateway.config.ConfigError` if it is not a usable URL.

    Constructing connects nothing: an unreachable Redis shows at the first command."""
    try:
        # A burst beyond the pool (many calls ending at once) waits for a connection instead
        # of failing as "unreachable"; the wait is bounded like any command.
        pool = aioredis.BlockingConnectionPool.from_url(
            url.reveal(),
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes its pool
    except ValueError as exc:
        # The message may quote the URL, password included: say what is wrong without it.
        raise ConfigError(
            f"GATEWAY_REDIS_URL is not a usable Redis URL ({type(exc).__name__})"
        ) from None


def redis_stores(
    client: aioredis.Redis, *, single_use: bool = True, max_secrets: int = DEFAULT_MAX_OUTSTANDING
) -> Stores:
    health = RedisHealth(client)
    return Stores(
        secrets=RedisSecretStore(
            client, health, single_use=single_use, max_outstanding=max_secrets
        ),
        rates=RedisRateWindows(client, health),
        calls=RedisCallDirectory(client, health),
        nodes=RedisNodeDirectory(client, health),
        recordings=RedisRecordingIndex(client, health),
        health=health,
        shared=True,
        closer=client.aclose,
    )
