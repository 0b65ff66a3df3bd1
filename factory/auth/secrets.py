"""Hashing what proves a person: scrypt for passwords, sha256 for random session ids and API tokens.

Session ids and tokens are 32 random bytes, so a fast hash is safe for them; passwords are not,
so they get scrypt (hashlib, no extra dependency) with a per-password salt. Every comparison is
constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~50 ms and 16 MiB per check


def new_secret(nbytes: int = 32) -> str:
    """A random url-safe string of `nbytes` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def digest(value: str) -> str:
    """sha256 hex of a high-entropy secret (a session id, an API token)."""
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time equality of two strings."""
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash` of the password."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024)
    enc = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${enc(salt).decode()}${enc(key).decode()}"


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash (False for no hash or a malformed one)."""
    try:
        kind, n, r, p, salt, key = (stored or "").split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), maxmem=64 * 1024 * 1024
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(key))
