from __future__ import annotations

import pytest

from gateway.client_secrets import ClientSecretStore
from gateway.errors import AuthenticationError
from gateway.log import REDACTED, Redactor, redact_text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestClientSecretStore:
    def test_mint_and_redeem_once(self) -> None:
        """A secret is ek_-prefixed, long, and single-use by default."""
        store = ClientSecretStore()
        token, secret = store.mint({"type": "realtime"}, 60)
        assert token.startswith("ek_") and len(token) >= 40
        assert store.redeem(token).session == {"type": "realtime"}
        with pytest.raises(AuthenticationError):
            store.redeem(token)

    def test_reusable_until_expiry(self) -> None:
        """With single_use off, a secret works until it expires, as OpenAI's do."""
        clock = Clock()
        store = ClientSecretStore(single_use=False, clock=clock)
        token, secret = store.mint({}, 60)
        store.redeem(token)
        store.redeem(token)
        clock.now += 61
        with pytest.raises(AuthenticationError) as info:
            store.redeem(token)
        assert info.value.code == "expired_client_secret"

    def test_peek_does_not_consume(self) -> None:
        """peek checks without using the secret up."""
        store = ClientSecretStore()
        token, _ = store.mint({}, 60)
        store.peek(token)
        store.redeem(token)

    def test_store_keeps_no_plaintext(self) -> None:
        """Only digests are stored."""
        store = ClientSecretStore()
        token, _ = store.mint({}, 60)
        assert token not in repr(store.__dict__)

    def test_expired_secrets_are_purged(self) -> None:
        """Minting drops expired secrets so the store does not grow forever."""
        clock = Clock()
        store = ClientSecretStore(clock=clock)
        store.mint({}, 10)
        clock.now += 11
        store.mint({}, 10)
        assert len(store) == 1


class TestRedaction:
    def test_patterns_and_known_secrets(self) -> None:
        """Key-shaped strings and configured secrets are masked anywhere in a string."""
        text = redact_text("key sk-abcdef123456 and ek_abcdefgh and mysecret", ["mysecret"])
        assert "sk-abc" not in text and "ek_abc" not in text and "mysecret" not in text
        assert text.count(REDACTED) == 3

    def test_processor_masks_nested_and_sensitive_keys(self) -> None:
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
    def test_minting_past_the_cap_is_refused(self) -> None:
        """At max_outstanding unused secrets, a mint answers 429 instead of growing the store."""
        from gateway.errors import RateLimited

        store = ClientSecretStore(max_outstanding=3)
        for _ in range(3):
            store.mint({}, 60)
        with pytest.raises(RateLimited) as info:
            store.mint({}, 60)
        assert info.value.status == 429 and info.value.retry_after == 5
        assert len(store) == 3

    def test_using_a_secret_makes_room(self) -> None:
        """A redeemed single-use secret frees its place."""
        store = ClientSecretStore(max_outstanding=1)
        token, _ = store.mint({}, 60)
        store.redeem(token)
        store.mint({}, 60)

    def test_expired_secrets_behind_a_long_lived_one_are_found_at_the_cap(self) -> None:
        """Secrets expire out of mint order; at the cap the whole store is searched."""
        clock = Clock()
        store = ClientSecretStore(max_outstanding=3, clock=clock)
        store.mint({}, 7200)
        store.mint({}, 10)
        store.mint({}, 10)
        clock.now += 11
        store.mint({}, 10)
        assert len(store) == 2
