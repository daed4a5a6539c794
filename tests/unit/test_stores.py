from __future__ import annotations

import pytest

from gateway.errors import AuthenticationError
from gateway.log import REDACTED, Redactor, redact_text
from gateway.stores.memory import MemorySecretStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestMemorySecretStore:
    async def test_mint_and_redeem_once(self) -> None:
        """A secret is ek_-prefixed, long, and single-use by default."""
        store = MemorySecretStore()
        token, secret = await store.mint({"type": "realtime"}, 60)
        assert token.startswith("ek_") and len(token) >= 40
        assert (await store.redeem(token)).session == {"type": "realtime"}
        with pytest.raises(AuthenticationError):
            await store.redeem(token)

    async def test_reusable_until_expiry(self) -> None:
        """With single_use off, a secret works until it expires, as OpenAI's do."""
        clock = Clock()
        store = MemorySecretStore(single_use=False, clock=clock)
        token, secret = await store.mint({}, 60)
        await store.redeem(token)
        await store.redeem(token)
        clock.now += 61
        with pytest.raises(AuthenticationError) as info:
            await store.redeem(token)
        assert info.value.code == "expired_client_secret"

    async def test_peek_does_not_consume(self) -> None:
        """peek checks without using the secret up."""
        store = MemorySecretStore()
        token, _ = await store.mint({}, 60)
        await store.peek(token)
        await store.redeem(token)

    async def test_store_keeps_no_plaintext(self) -> None:
        """Only digests are stored."""
        store = MemorySecretStore()
        token, _ = await store.mint({}, 60)
        assert token not in repr(store.__dict__)

    async def test_expired_secrets_are_purged(self) -> None:
        """Minting drops expired secrets so the store does not grow forever."""
        clock = Clock()
        store = MemorySecretStore(clock=clock)
        await store.mint({}, 10)
        clock.now += 11
        await store.mint({}, 10)
        assert await store.count() == 1


class TestRedaction:
    async def test_patterns_and_known_secrets(self) -> None:
        """Key-shaped strings and configured secrets are masked anywhere in a string."""
        text = redact_text("key sk-abcdef123456 and ek_abcdefgh and mysecret", ["mysecret"])
        assert "sk-abc" not in text and "ek_abc" not in text and "mysecret" not in text
        assert text.count(REDACTED) == 3

    async def test_processor_masks_nested_and_sensitive_keys(self) -> None:
        """The structlog processor masks sensitive keys and nested values."""
        out = Redactor(["topsecret"])(
            None,
            "info",
            {
                "event": "x",
                "authorization": "Bearer abc",
                "nested": {"list": ["topsecret"], "api_key": "k"},
            },
        )
        assert out["authorization"] == REDACTED
        assert out["nested"] == {"list": [REDACTED], "api_key": REDACTED}


class TestOutstandingCap:
    async def test_minting_past_the_cap_is_refused(self) -> None:
        """At max_outstanding unused secrets, a mint answers 429 instead of growing the store."""
        from gateway.errors import RateLimited

        store = MemorySecretStore(max_outstanding=3)
        for _ in range(3):
            await store.mint({}, 60)
        with pytest.raises(RateLimited) as info:
            await store.mint({}, 60)
        assert info.value.status == 429 and info.value.retry_after == 5
        assert await store.count() == 3

    async def test_using_a_secret_makes_room(self) -> None:
        """A redeemed single-use secret frees its place."""
        store = MemorySecretStore(max_outstanding=1)
        token, _ = await store.mint({}, 60)
        await store.redeem(token)
        await store.mint({}, 60)

    async def test_expired_secrets_behind_a_long_lived_one_are_found_at_the_cap(self) -> None:
        """Secrets expire out of mint order; at the cap the whole store is searched."""
        clock = Clock()
        store = MemorySecretStore(max_outstanding=3, clock=clock)
        await store.mint({}, 7200)
        await store.mint({}, 10)
        await store.mint({}, 10)
        clock.now += 11
        await store.mint({}, 10)
        assert await store.count() == 2


class TestSingleUse:
    async def test_concurrent_redeems_have_one_winner(self) -> None:
        """Of many redeems of one single-use secret at once, exactly one succeeds."""
        import asyncio

        store = MemorySecretStore()
        token, _ = await store.mint({}, 60)
        results = await asyncio.gather(
            *(store.redeem(token) for _ in range(10)), return_exceptions=True
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1


class TestMemoryRateWindows:
    async def test_counts_per_scope_and_key(self) -> None:
        """Each (scope, key) has its own window; past the limit, the wait is returned."""
        from gateway.stores.memory import MemoryRateWindows

        now = [0.0]
        rates = MemoryRateWindows(clock=lambda: now[0])
        assert [await rates.hit("ip", "a", 2) for _ in range(2)] == [None, None]
        wait = await rates.hit("ip", "a", 2)
        assert wait is not None and 0 < wait <= 60
        assert await rates.hit("ip", "b", 2) is None
        assert await rates.hit("secret", "a", 2) is None
        now[0] += 60
        assert await rates.hit("ip", "a", 2) is None


class TestMemoryCallDirectory:
    async def test_register_lookup_list_unregister(self) -> None:
        """The directory lists what is registered until it is unregistered."""
        from gateway.stores.base import CallEntry
        from gateway.stores.memory import MemoryCallDirectory

        calls = MemoryCallDirectory()
        entry = CallEntry(call_id="rtc_1", owner="a", address="", dialect="ga", started_at=1.0)
        await calls.register(entry)
        assert await calls.lookup("rtc_1") == entry
        assert await calls.entries() == [entry]
        await calls.unregister("rtc_1")
        assert await calls.lookup("rtc_1") is None
        await calls.unregister("rtc_1")  # idempotent


class TestMemoryRecordingIndex:
    async def test_placed_until_expired_and_bounded(self) -> None:
        """Located until its time to live runs out (0: never); only the newest ``limit`` are
        kept, so the index of a long-running process does not grow without bound."""
        from gateway.stores.memory import MemoryRecordingIndex

        clock = Clock()
        index = MemoryRecordingIndex(clock=clock)
        await index.place("rtc_a", "n1", 10)
        await index.place("rtc_b", "n1", 0)
        assert await index.locate("rtc_a") == "n1"
        clock.now += 11
        assert await index.locate("rtc_a") is None
        assert await index.locate("rtc_b") == "n1"
        index.limit = 3
        for n in range(5):
            await index.place(f"rtc_{n}", "n2", 100)
        assert await index.locate("rtc_b") is None
        assert [await index.locate(f"rtc_{n}") for n in range(5)] == [None, None, "n2", "n2", "n2"]
