"""Sign-in by OpenID Connect: discovery, the authorization-code flow with PKCE (S256), and a verified id_token.

What is trusted: only an id_token whose RS256 signature checks against the issuer's JWKS (fetched
from the discovery document of the configured issuer, whose `issuer` must equal it), whose `iss`
is the issuer, whose `aud` holds our client id, that has not expired and whose `nonce` is the one
this sign-in sent. The login comes from that verified token, never from the browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from factory.auth.secrets import new_secret

LEEWAY = 60  # seconds of clock skew allowed on exp and iat


class SignInError(Exception):
    """The provider's answer does not prove who signed in; the message says why (no secret in it)."""


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Pending:
    """What a started sign-in keeps (server-side, keyed by `state`) until the callback."""

    state: str
    nonce: str
    verifier: str
    url: str  # where to send the browser


def challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier))."""
    return b64url(hashlib.sha256(verifier.encode()).digest())


async def discover(http: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    """The issuer's discovery document, checked to name the same issuer."""
    r = await http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    r.raise_for_status()
    doc = r.json()
    if doc.get("issuer") != issuer:
        raise SignInError("the discovery document names another issuer")
    return doc


async def start(http: httpx.AsyncClient, issuer: str, client_id: str, redirect_uri: str, scopes: str) -> Pending:
    """A new sign-in: the authorization URL with state, nonce and the PKCE challenge."""
    doc = await discover(http, issuer)
    state, nonce, verifier = new_secret(), new_secret(), new_secret(48)
    query = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
        "state": state, "nonce": nonce, "code_challenge": challenge(verifier), "code_challenge_method": "S256",
    }  # fmt: skip
    return Pending(state, nonce, verifier, f"{doc['authorization_endpoint']}?{urlencode(query)}")


async def finish(
    http: httpx.AsyncClient,
    issuer: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    pending: Pending,
) -> dict[str, Any]:
    """Exchange the code (with the PKCE verifier) and return the verified id_token's claims."""
    doc = await discover(http, issuer)
    form = {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": client_id, "client_secret": client_secret, "code_verifier": pending.verifier,
    }  # fmt: skip
    r = await http.post(doc["token_endpoint"], data=form, headers={"Accept": "application/json"})
    if r.status_code != 200:
        raise SignInError(f"the token endpoint answered {r.status_code}")
    id_token = r.json().get("id_token")
    if not isinstance(id_token, str):
        raise SignInError("the token endpoint gave no id_token")
    jwks = (await http.get(doc["jwks_uri"])).json()
    return verify_id_token(id_token, jwks, issuer, client_id, pending.nonce)


def _rsa_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def verify_id_token(
    token: str, jwks: dict[str, Any], issuer: str, audience: str, nonce: str, now: float | None = None
) -> dict[str, Any]:
    """The claims of an RS256 id_token, after checking signature, iss, aud, exp and nonce."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(b64url_decode(head_b64))
        claims = json.loads(b64url_decode(body_b64))
        signature = b64url_decode(sig_b64)
    except ValueError as exc:
        raise SignInError("the id_token is not a JWT") from exc
    if header.get("alg") != "RS256":  # never "none", never an HMAC keyed with a public key
        raise SignInError(f"id_token algorithm {header.get('alg')!r} is not RS256")
    keys = [k for k in jwks.get("keys", []) if k.get("kty") == "RSA" and k.get("kid") == header.get("kid")]
    if not keys:
        raise SignInError("no key of the issuer's JWKS signed the id_token")
    try:
        _rsa_key(keys[0]).verify(signature, f"{head_b64}.{body_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception as exc:
        raise SignInError("the id_token's signature does not verify") from exc
    now = time.time() if now is None else now
    aud = claims.get("aud")
    if claims.get("iss") != issuer:
        raise SignInError("the id_token names another issuer")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        raise SignInError("the id_token is for another client")
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] + LEEWAY < now:
        raise SignInError("the id_token has expired")
    if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
        raise SignInError("the id_token's nonce is not this sign-in's")
    return claims
