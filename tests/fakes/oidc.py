"""An OpenID Connect provider stand-in over real HTTP: discovery, JWKS, authorize (PKCE S256), token.

`/authorize` signs in whoever `next_user` names (a test sets it; there is no login form) and
redirects back with a code; `/token` checks the code, the client secret, the redirect URI and the
PKCE verifier, and issues an RS256 id_token signed with a fresh key, carrying the nonce it was
given. `tamper` makes the next id_token wrong in one way (bad signature, other audience, expired,
other nonce), so tests can prove each check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse

from tests.fakes.http import BackgroundServer, free_port


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOIDC:
    def __init__(self, client_id: str = "factory", client_secret: str = "oidc-secret-7d41c2"):
        self.client_id, self.client_secret = client_id, client_secret
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(4)
        self.next_user = "viewer1"
        self.tamper: str | None = None  # signature, audience, expired, nonce
        self.codes: dict[str, dict[str, Any]] = {}
        self.authorize_calls: list[dict[str, str]] = []
        self._server = BackgroundServer(self.app(), self.port)

    def sign(self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
        head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": self.kid}).encode())
        body = _b64(json.dumps(claims).encode())
        sig = (key or self.key).sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{_b64(sig)}"

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes(3, "big")
        return {"keys": [{"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig", "n": _b64(n), "e": _b64(e)}]}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return self.jwks()

        @app.get("/authorize")
        def authorize(request: Request) -> RedirectResponse:
            q = dict(request.query_params)
            self.authorize_calls.append(q)
            if q.get("client_id") != self.client_id or q.get("code_challenge_method") != "S256":
                raise HTTPException(400, "bad client or no S256 challenge")
            code = secrets.token_urlsafe(16)
            self.codes[code] = {**q, "user": self.next_user}
            return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

        @app.post("/token")
        async def token(request: Request) -> dict[str, Any]:
            form = dict(parse_qsl((await request.body()).decode()))  # application/x-www-form-urlencoded
            code, code_verifier = form.get("code", ""), form.get("code_verifier", "")
            grant_type, redirect_uri = form.get("grant_type"), form.get("redirect_uri")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            grant = self.codes.pop(code, None)
            if grant is None or grant_type != "authorization_code" or client_id != self.client_id:
                raise HTTPException(400, "invalid_grant")
            if client_secret != self.client_secret or redirect_uri != grant["redirect_uri"]:
                raise HTTPException(401, "invalid_client")
            challenge = _b64(hashlib.sha256(code_verifier.encode()).digest())
            if challenge != grant["code_challenge"]:
                raise HTTPException(400, "invalid_grant: PKCE verifier does not match")
            now = int(time.time())
            claims = {
                "iss": self.issuer, "aud": self.client_id, "sub": f"sub-{grant['user']}", "iat": now,
                "exp": now + 300, "nonce": grant["nonce"], "preferred_username": grant["user"],
            }  # fmt: skip
            key = None
            tamper, self.tamper = self.tamper, None
            if tamper == "audience":
                claims["aud"] = "someone-else"
            elif tamper == "expired":
                claims["exp"] = now - 3600
            elif tamper == "nonce":
                claims["nonce"] = "not-the-nonce"
            elif tamper == "signature":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "id_token": self.sign(claims, key),
            }

        return app

    def pem(self) -> bytes:  # for debugging a failed test by hand
        return self.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)

    def start(self) -> str:
        return self._server.start()

    def stop(self) -> None:
        self._server.stop()
