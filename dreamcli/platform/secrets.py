"""Key material: publishable/secret pairs with >= 128 bits from the CSPRNG, hashed with SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

# The guide's formats (pk_live_ + 32 hex = 128 bits). The secret gets 256 bits.
PUBLISHABLE_PREFIX = "pk_live_"
SECRET_PREFIX = "sk_live_"
PLATFORM_PREFIX = "plt_"


@dataclass(frozen=True)
class KeyPair:
    publishable_key: str
    secret_key: str

    @property
    def secret_hash(self) -> str:
        return hash_secret(self.secret_key)

    def __repr__(self) -> str:  # the secret never reaches a log through repr
        return f"KeyPair(publishable_key={self.publishable_key!r}, secret_key={secret_start(self.secret_key)!r})"


def new_platform_id() -> str:
    return PLATFORM_PREFIX + secrets.token_hex(16)


def new_key_pair() -> KeyPair:
    return KeyPair(PUBLISHABLE_PREFIX + secrets.token_hex(16), SECRET_PREFIX + secrets.token_hex(32))


def hash_secret(secret_key: str) -> str:
    """Unsalted SHA-256 hex of the whole key: fine for random keys, and it allows lookup by hash."""
    return hashlib.sha256(secret_key.encode("utf-8")).hexdigest()


def secret_start(secret_key: str, visible: int = 4) -> str:
    """What may be shown after creation: the prefix and the first characters."""
    head = secret_key[: len(SECRET_PREFIX) + visible] if secret_key.startswith(SECRET_PREFIX) else secret_key[:visible]
    return f"{head}..."
