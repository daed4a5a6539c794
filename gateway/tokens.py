"""Client secrets: short-lived ``ek_`` tokens minted by the gateway, never OpenAI's.

A token carries the session configuration the app's backend minted it with. Only a SHA-256
digest of each token is kept, so the store cannot leak usable tokens and lookups do not depend
on the token's bytes (no timing side channel).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import AuthenticationError

TOKEN_PREFIX = "ek_"


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class ClientSecret:
    digest: bytes
    created_at: float
    expires_at: int
    session: dict[str, Any]


class ClientSecretStore:
    """Mints and redeems client secrets; single-use unless configured otherwise."""

    def __init__(self, *, single_use: bool = True, clock: Callable[[], float] = time.time) -> None:
        self._single_use = single_use
        self._clock = clock
        self._secrets: dict[bytes, ClientSecret] = {}

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, session: dict[str, Any], ttl: int) -> tuple[str, ClientSecret]:
        self._purge()
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
        for digest in [d for d, s in self._secrets.items() if now >= s.expires_at]:
            del self._secrets[digest]
