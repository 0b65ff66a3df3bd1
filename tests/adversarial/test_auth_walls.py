"""Attacks on the sign-in and session walls, each run for real against a real API server and stand-ins.

The walls (api/middleware.py AuthGate, api/routes/auth.py, factory/auth/oidc.py): a write made with
the session cookie must come from this site (Origin/Referer) and carry the session's CSRF token;
a sign-in callback counts only for the browser that started it, once; an id_token counts only when
its RS256 signature, issuer, audience, expiry and nonce all check. Each test fails if its wall gives.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, select

from factory.auth.oidc import SignInError, verify_id_token
from factory.store.people import AuthSession
from factory.store.tables import utcnow
from tests.auth_harness import BEARER, factory_site

pytestmark = pytest.mark.adversarial


@pytest.fixture
def site(tmp_path, monkeypatch):
    for name in ("FACTORY_AUTH_TOKEN", "OIDC_CLIENT_SECRET", "GITHUB_OAUTH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with factory_site(tmp_path) as s:
        yield s


def test_cross_site_writes_with_the_session_cookie_are_refused(site):
    boss = site.sign_in_oidc("boss")  # an admin: every refusal below is the CSRF wall, not the role
    csrf = site.csrf(boss)
    users_before = len(boss.get("/api/users").json())
    evil = "https://evil.example"
    # a cross-site HTML form post: the browser sends the cookie, a foreign Origin, no custom header
    form = {"Origin": evil, "Content-Type": "application/x-www-form-urlencoded"}
    r = boss.post("/api/users", content="login=mallory&role=admin", headers=form)
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    # even holding the token (it cannot, but say it could): the foreign Origin alone is refused
    r = boss.post(
        "/api/users", json={"login": "mallory", "role": "admin"}, headers={"Origin": evil, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 403
    r = boss.post("/api/users", json={"login": "mallory", "role": "admin"}, headers={"Referer": f"{evil}/x"})
    assert r.status_code == 403
    # no Origin and no token (a sandboxed iframe's `Origin: null`, a stripped header): the token is missing
    for headers in ({}, {"Origin": "null"}, {"X-CSRF-Token": "guess"}):
        r = boss.post("/api/users", json={"login": "mallory", "role": "admin"}, headers=headers)
        assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"], headers
    assert len(boss.get("/api/users").json()) == users_before, "a refused write created a user"
    # the same write from this site, with the token, goes through
    r = boss.post(
        "/api/users", json={"login": "ok-user", "role": "viewer"}, headers={"Origin": site.url, "X-CSRF-Token": csrf}
    )
    assert r.status_code == 201
    # a bearer request is not CSRF-able (no browser attaches it): a foreign Origin does not matter
    r = httpx.post(
        f"{site.url}/api/users", json={"login": "by-bearer", "role": "viewer"}, headers={**BEARER, "Origin": evil}
    )
    assert r.status_code == 201
    denied = httpx.get(f"{site.url}/api/audit", params={"actor": "boss", "action": "user.create"}, headers=BEARER)
    assert [e["outcome"] for e in denied.json()["entries"]].count("denied") == 6


def test_local_sign_in_from_another_site_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    with factory_site(tmp_path, local=True) as s:
        httpx.post(
            f"{s.url}/api/users",
            json={"login": "lou", "role": "viewer", "password": "lou's long password"},
            headers=BEARER,
        )
        r = httpx.post(
            f"{s.url}/auth/local",
            json={"login": "lou", "password": "lou's long password"},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403 and "set-cookie" not in r.headers


def test_a_callback_the_browser_did_not_start_is_refused_and_a_state_counts_once(site):
    # the attacker starts a sign-in in their own browser and stops at the callback URL
    site.oidc.next_user = "mallory"
    attacker = site.client()
    to_idp = attacker.get("/auth/oidc/start")
    back = httpx.get(to_idp.headers["location"])  # the IdP's redirect to our callback, with code and state
    callback = back.headers["location"]
    # ... and makes the victim's browser (no state cookie of that sign-in) open it: login CSRF
    victim = site.client(follow_redirects=True)
    r = victim.get(callback)
    assert r.url.path == "/static/signin.html" and "factory_session" not in victim.cookies
    # the attacker's own browser cannot use it after that either: the state was spent
    r = attacker.get(callback)
    assert r.status_code == 303 and r.headers["location"].startswith("/static/signin.html")
    assert "factory_session" not in attacker.cookies
    # a made-up state with a matching made-up cookie is no pending sign-in
    r = site.client(cookies={"factory_signin": "forged"}).get("/auth/oidc/callback?code=x&state=forged")
    assert r.headers["location"].startswith("/static/signin.html")


@pytest.mark.parametrize("tamper", ["signature", "audience", "expired", "nonce"])
def test_a_tampered_id_token_signs_nobody_in(site, tamper):
    site.oidc.tamper = tamper
    c = site.client(follow_redirects=True)
    site.oidc.next_user = "boss"
    r = c.get("/auth/oidc/start")
    assert r.url.path == "/static/signin.html", f"a {tamper}-tampered id_token signed someone in"
    assert "factory_session" not in c.cookies
    assert c.get("/api/me").status_code == 401
    failed = httpx.get(f"{site.url}/api/audit", params={"action": "auth.signin_failed"}, headers=BEARER).json()
    assert failed["entries"] and failed["entries"][0]["outcome"] == "denied"


def test_unsigned_and_hmac_id_tokens_are_refused(site):
    """alg=none and HS256 keyed with the public key (the classic JWT confusions) are not RS256: refused."""
    jwks = site.oidc.jwks()
    now = int(time.time())
    claims = {"iss": site.oidc.issuer, "aud": site.oidc.client_id, "exp": now + 60, "nonce": "n", "sub": "x"}

    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    for alg in ("none", "HS256"):
        token = f"{b64({'alg': alg, 'kid': site.oidc.kid})}.{b64(claims)}.{'' if alg == 'none' else 'c2ln'}"
        with pytest.raises(SignInError):
            verify_id_token(token, jwks, site.oidc.issuer, site.oidc.client_id, "n")
    good = site.oidc.sign(claims)
    assert verify_id_token(good, jwks, site.oidc.issuer, site.oidc.client_id, "n")["sub"] == "x"
    with pytest.raises(SignInError):  # another issuer's token, validly signed by the same key
        verify_id_token(
            site.oidc.sign({**claims, "iss": "https://other"}), jwks, site.oidc.issuer, site.oidc.client_id, "n"
        )


def test_an_expired_or_revoked_session_cookie_opens_nothing(site):
    c = site.sign_in_oidc("vera")
    assert c.get("/api/me").status_code == 200
    with Session(site.app.state.engine) as s:
        row = s.exec(select(AuthSession)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    assert c.get("/api/me").status_code == 401
    assert site.client(cookies={"factory_session": "x" * 43}).get("/api/me").status_code == 401
