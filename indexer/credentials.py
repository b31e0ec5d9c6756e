"""Secrets handed out once (withdrawal secrets, API keys) and stored only as salted hashes.

A stolen store then reveals no secret that works. The secrets are 192 random
bits, so a salted SHA-256 is as hard to invert as a slow password hash would
be, and cheap enough to verify an API key on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SALT_BYTES = 16
KEY_PREFIX = "hm"


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def secret_matches(secret: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), expected)


def api_key_token(key_id: str, secret: str) -> str:
    """What the caller sends as `authorization: Bearer <token>`."""
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    prefix, sep, rest = token.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not sep or not sep2 or not key_id or not secret:
        return None
    return key_id, secret
