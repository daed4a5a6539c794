"""Client secrets: short-lived ``ek_`` tokens minted by the gateway, never OpenAI's.

A token carries the session configuration the app's backend minted it with. Only a SHA-256
digest of each token is kept (by every store), so a store cannot leak usable tokens and lookups
do not depend on the token's bytes (no timing side channel). Stores live in
:mod:`gateway.stores`; this module is what they share: the token format and the errors.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from gateway.config.apps import DEFAULT_APP
from gateway.errors import AuthenticationError, RateLimited

TOKEN_PREFIX = "ek_"
# Unredeemed secrets kept at most; minting beyond answers 429 until some expire or are used.
DEFAULT_MAX_OUTSTANDING = 100_000


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class ClientSecret:
    digest: bytes
    created_at: float
    expires_at: int
    session: dict[str, Any]
    app: str = DEFAULT_APP
    """The app whose backend minted it: the browser's call is that app's."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)  # 256 bits


def unknown_secret() -> AuthenticationError:
    return AuthenticationError(
        "Invalid or already used client secret. Mint a new one with "
        "POST /v1/realtime/client_secrets.",
        code="invalid_api_key",
    )


def expired_secret() -> AuthenticationError:
    return AuthenticationError(
        "The client secret has expired. Mint a new one with POST /v1/realtime/client_secrets.",
        code="expired_client_secret",
    )


def too_many_secrets(limit: int) -> RateLimited:
    return RateLimited(
        f"Too many client secrets are outstanding ({limit}); retry when some have been used or "
        "have expired.",
        retry_after=5,
    )
