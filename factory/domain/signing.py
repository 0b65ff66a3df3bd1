"""Checking shared secrets and HMAC signatures of inbound requests in constant time."""

from __future__ import annotations

import hashlib
import hmac


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Whether `given` equals `expected`, compared in constant time."""
    if given is None:
        return False
    g = given.encode() if isinstance(given, str) else given
    e = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(g, e)


def valid_hmac_sha256(secret: str, body: bytes, header: str | None, prefix: str = "") -> bool:
    """Whether `header` is `prefix` + the hex HMAC-SHA256 of `body` under `secret` (GitHub: prefix "sha256=")."""
    if not header:
        return False
    expected = prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return same_secret(header.strip().lower(), expected.lower())
