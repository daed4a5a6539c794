"""The stores in a real redis-server: what several processes share, and Redis going away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.config import ConfigError, Secret
from gateway.errors import AuthenticationError, RateLimited, StoreUnavailable
from gateway.stores.base import CallEntry, NodeEntry, Stores
from gateway.stores.redis import redis_client, redis_stores
from tests.support.servers import RedisServer, redis_server


@pytest.fixture(name="redis")
async def _redis() -> AsyncIterator[RedisServer]:
    async with redis_server() as server:
        yield server


@pytest.fixture(name="make_stores")
async def _make_stores(redis: RedisServer) -> AsyncIterator[object]:
    clients = []

    def make(**options: int | bool) -> Stores:
        client = redis_client(Secret(redis.url))
        clients.append(client)
        return redis_stores(client, **options)  # type: ignore[arg-type]

    yield make
    for client in clients:
        await client.aclose()


def entry(call_id: str, owner: str = "a") -> CallEntry:
    return CallEntry(call_id=call_id, owner=owner, address="http://a", dialect="ga", started_at=1.0)


class TestSecrets:
    async def test_minted_by_one_process_redeemed_by_another_once(self, make_stores) -> None:
        """A secret minted through one client is redeemed through another, exactly once."""
        one, two = make_stores(), make_stores()
        token, _ = await one.secrets.mint({"instructions": "x"}, 60)
        assert (await two.secrets.peek(token)).session == {"instructions": "x"}
        results = await asyncio.gather(
            *(store.secrets.redeem(token) for store in (one, two, one, two)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, AuthenticationError) for r in results if isinstance(r, Exception))

    async def test_the_cap_counts_across_processes(self, make_stores) -> None:
        """max_outstanding holds for the cluster, not per process."""
        one, two = make_stores(max_secrets=2), make_stores(max_secrets=2)
        await one.secrets.mint({}, 60)
        await two.secrets.mint({}, 60)
        with pytest.raises(RateLimited):
            await one.secrets.mint({}, 60)
        assert await two.secrets.count() == 2

    async def test_reusable_secrets_are_not_consumed(self, make_stores) -> None:
        """With single use off, a secret works until it expires."""
        stores = make_stores(single_use=False)
        token, _ = await stores.secrets.mint({}, 60)
        await stores.secrets.redeem(token)
        await stores.secrets.redeem(token)


class TestRates:
    async def test_a_window_is_shared(self, make_stores) -> None:
        """Attempts through different processes count in one window."""
        one, two = make_stores(), make_stores()
        assert await one.rates.hit("calls_ip", "1.2.3.4", 2) is None
        assert await two.rates.hit("calls_ip", "1.2.3.4", 2) is None
        wait = await one.rates.hit("calls_ip", "1.2.3.4", 2)
        assert wait is not None and 0 < wait <= 60
        assert await two.rates.hit("calls_ip", "5.6.7.8", 2) is None


class TestDirectory:
    async def test_calls_and_nodes_are_listed_until_removed(self, make_stores) -> None:
        """Register, look up, list, unregister; nodes likewise."""
        stores = make_stores()
        await stores.calls.register(entry("rtc_1"))
        await stores.calls.register(entry("rtc_2", owner="b"))
        assert (await stores.calls.lookup("rtc_1")) == entry("rtc_1")
        assert {e.call_id for e in await stores.calls.entries()} == {"rtc_1", "rtc_2"}
        await stores.calls.unregister("rtc_1")
        assert await stores.calls.lookup("rtc_1") is None
        node = NodeEntry(name="a", address="http://127.0.0.1:1", group="g", started_at=2.0)
        await stores.nodes.announce(node)
        assert await stores.nodes.nodes() == [node]
        await stores.nodes.withdraw("a")
        assert await stores.nodes.nodes() == []

    async def test_entries_expire_unless_refreshed(
        self, make_stores, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An owner that stops refreshing (it died) has its calls leave the directory."""
        from gateway.stores import redis as redis_module

        monkeypatch.setattr(redis_module, "ENTRY_TTL", 0.3)
        stores = make_stores()
        await stores.calls.register(entry("rtc_dead"))
        await stores.calls.register(entry("rtc_alive"))
        for _ in range(4):
            await asyncio.sleep(0.15)
            await stores.calls.refresh([entry("rtc_alive")])
        assert await stores.calls.lookup("rtc_dead") is None
        assert [e.call_id for e in await stores.calls.entries()] == ["rtc_alive"]


class TestRecordingIndex:
    async def test_any_process_finds_which_holds_a_recording(self, make_stores) -> None:
        """Placed through one client, located through another; gone after its time to live;
        a ttl of 0 keeps it."""
        one, two = make_stores(), make_stores()
        await one.recordings.place("rtc_a", "node-1", 0.3)
        await one.recordings.place("rtc_b", "node-2", 0)
        assert await two.recordings.locate("rtc_a") == "node-1"
        assert await two.recordings.locate("rtc_nope") is None
        await asyncio.sleep(0.5)
        assert await two.recordings.locate("rtc_a") is None
        assert await two.recordings.locate("rtc_b") == "node-2"


class TestRedisDown:
    async def test_failures_are_503_and_recovery_needs_no_restart(
        self, make_stores, redis: RedisServer
    ) -> None:
        """Redis stopping: store calls raise StoreUnavailable and health turns false; Redis
        back: the same stores work again."""
        stores = make_stores()
        await redis.stop()
        with pytest.raises(StoreUnavailable) as info:
            await stores.secrets.mint({}, 60)
        assert info.value.status == 503 and info.value.retry_after >= 1
        assert not stores.health.healthy
        await redis.start()
        assert await stores.health.check()
        token, _ = await stores.secrets.mint({}, 60)
        await stores.secrets.redeem(token)


class TestConfiguration:
    def test_a_url_redis_cannot_use_is_a_configuration_error(self) -> None:
        """A URL redis-py refuses is reported without repeating it (it may hold a password)."""
        with pytest.raises(ConfigError) as info:
            redis_client(Secret("redis://:s3cret@host:6379/0?socket_timeout=abc"))
        assert "s3cret" not in str(info.value)
