"""Client secrets: short-lived ``ek_`` tokens minted by the gateway, never OpenAI's.

A token carries the session configuration the app's backend minted it with. Only a SHA-256
digest of each token is kept, so the store cannot leak usable tokens and lookups do not depend
on the token's bytes (no timing side channel).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthenticationError, RateLimited

TOKEN_PREFIX = "ek_"
# Unredeemed secrets kept at most; minting beyond answers 429 until some expire or are used.
DEFAULT_MAX_OUTSTANDING = 100_000
# At the cap, expired secrets are looked for everywhere at most this often (seconds): a full
# scan costs milliseconds at 100k, and a mint flood must not pay it for every request.
FULL_PURGE_INTERVAL = 1.0


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class ClientSecret:
    digest: bytes
    created_at: float
    expires_at: int
    session: dict[str, Any]


class ClientSecretStore:
    """Mints and redeems client secrets; single-use unless configured otherwise.

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

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, session: dict[str, Any], ttl: int) -> tuple[str, ClientSecret]:
        """A new secret; :class:`RateLimited` when ``max_outstanding`` are waiting to be used."""
        self._purge()
        if len(self._secrets) >= self._max:
            raise RateLimited(
                f"Too many client secrets are outstanding ({self._max}); retry when some have "
                "been used or have expired.",
                retry_after=5,
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits
        now = self._clock()
        secret = ClientSecret(
            digest=token_digest(token),
            created_at=now,
            expires_at=int(now + ttl),
            session=session,
        )
        self._secrets[secret.digest] = secret
        return token, secret

    def peek(self, token: str) -> ClientSecret:
        """The secret behind ``token`` without consuming it; 401 if unknown or expired."""
        digest = token_digest(token)
        secret = self._secrets.get(digest)
        if secret is None:
            raise AuthenticationError(
                "Invalid or already used client secret. Mint a new one with "
                "POST /v1/realtime/client_secrets.",
                code="invalid_api_key",
            )
        if self._clock() >= secret.expires_at:
            del self._secrets[digest]
            raise AuthenticationError(
                "The client secret has expired. Mint a new one with "
                "POST /v1/realtime/client_secrets.",
                code="expired_client_secret",
            )
        return secret

    def redeem(self, token: str) -> ClientSecret:
        """Like :meth:`peek`, and consumes the secret when secrets are single-use."""
        secret = self.peek(token)
        if self._single_use:
            del self._secrets[secret.digest]
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
