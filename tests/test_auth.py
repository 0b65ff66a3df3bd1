"""People, roles, tokens, sign-in and the audit log, against a real API server and real HTTP stand-ins.

The OIDC provider (tests/fakes/oidc.py) and GitHub's OAuth endpoints (tests/fakes/github.py) are
real HTTP servers; the sign-ins below are the full redirect flows, cookies and all. The attacks on
these walls (cross-site writes, forged callbacks, tampered id_tokens) are in
tests/adversarial/test_auth_walls.py; the browser story in tests/test_auth_browser.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from factory.auth import people
from factory.auth.roles import rule_for
from factory.auth.status import auth_status
from factory.config import FactoryConfig
from factory.store import audit
from factory.store.people import ApiToken, AuditEntry
from factory.store.retention import prune_people
from factory.store.tables import make_engine, utcnow
from tests.auth_harness import BEARER, BOOT, all_routes, factory_site


@pytest.fixture
def site(tmp_path, monkeypatch):
    for name in ("FACTORY_AUTH_TOKEN", "OIDC_CLIENT_SECRET", "GITHUB_OAUTH_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with factory_site(tmp_path, local=True) as s:
        yield s


def test_every_route_has_a_rule(site):
    """A route nobody gave a rule would need admin by the fallback; this lists any such route by name."""
    routes = all_routes(site.app.routes)
    assert len(routes) > 40
    unlisted = []
    for method, path in routes:
        rule = rule_for(method, path.replace("{", "").replace("}", ""))
        if not rule.listed:
            unlisted.append(f"{method} {path}")
        if path.startswith("/webhooks"):
            assert rule.role == "public", "webhooks check their own signatures, not roles"
    assert unlisted == [], f"routes with no rule in factory/auth/roles.py: {unlisted}"
    # the audit log has no route that changes it
    assert [(m, p) for m, p in routes if p.startswith("/api/audit") and m not in ("GET", "HEAD")] == []
    assert not [n for n in dir(audit) if n.startswith(("update", "delete", "remove"))]
    # the rule's shape: reads view, task actions operate, people are admin's
    assert rule_for("GET", "/api/tasks/3").role == "viewer"
    assert rule_for("POST", "/api/tasks/3/cancel").role == "operator"
    assert rule_for("POST", "/api/users").role == "admin"
    assert rule_for("POST", "/api/new-thing-nobody-listed").role == "admin"


def test_oidc_sign_in_makes_a_viewer_who_reads_but_cannot_write(site):
    c = site.sign_in_oidc("vera")
    call = site.oidc.authorize_calls[-1]
    assert call["code_challenge_method"] == "S256" and call["state"] and call["nonce"]
    session = c.cookies.get("factory_session")
    assert session and len(session) >= 40
    me = c.get("/api/me").json()
    assert (me["actor"], me["role"], me["via"]) == ("vera", "viewer", "cookie")
    assert c.get("/api/tasks").status_code == 200
    r = c.post("/api/tasks", json={"title": "t", "repo": "demo"}, headers={"X-CSRF-Token": me["csrf"]})
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    # the second sign-in finds the same person by their linked identity
    again = site.sign_in_oidc("vera")
    assert again.get("/api/me").json()["user_id"] == me["user_id"]
    # only the cookie's hash is stored
    with Session(site.app.state.engine) as s:
        hashes = [row[0] for row in s.exec(text("SELECT id_hash FROM auth_sessions"))]
    assert session not in hashes and len(hashes) == 2
    entries = httpx.get(f"{site.url}/api/audit", headers=BEARER).json()["entries"]
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries[:2]] == [
        ("vera", "task.create", "denied"),
        ("vera", "auth.signin", "ok"),
    ] or ("vera", "auth.signin", "ok") in [(e["actor"], e["action"], e["outcome"]) for e in entries]
    assert ("vera", "task.create", "denied") in [(e["actor"], e["action"], e["outcome"]) for e in entries]
    # sign-out ends the session everywhere: the same cookie is refused afterwards
    assert c.post("/api/auth/signout", headers={"X-CSRF-Token": me["csrf"]}).status_code == 200
    assert httpx.get(f"{site.url}/api/me", cookies={"factory_session": session}).status_code == 401


def test_admins_from_config_and_github_sign_in(site):
    boss = site.sign_in_oidc("boss")
    assert boss.get("/api/me").json()["role"] == "admin"
    site.github.oauth_user = "octocat"
    c = site.client(follow_redirects=True)
    assert c.get("/auth/github/start").url.path == "/"
    assert c.get("/api/me").json()["actor"] == "octocat"
    assert c.get("/api/me").json()["role"] == "viewer"
    # an OIDC user named like an existing person is refused, not merged into them
    site.oidc.next_user = "octocat"
    r = site.client(follow_redirects=True).get("/auth/oidc/start")
    assert r.url.path == "/static/signin.html" and "taken" in r.url.params["error"]


def test_personal_tokens_are_scoped_hashed_and_revocable(site):
    api = site.client(headers=BEARER)
    op = api.post("/api/users", json={"login": "otto", "role": "operator"}).json()
    assert api.post("/api/users", json={"login": "otto", "role": "viewer"}).status_code == 409
    assert api.post(f"/api/users/{op['id']}/tokens", json={"scope": "admin"}).status_code == 422
    made = api.post(f"/api/users/{op['id']}/tokens", json={"scope": "operate", "name": "laptop"}).json()
    token = made["token"]
    assert token.startswith("fct_")
    with Session(site.app.state.engine) as s:
        row = s.get(ApiToken, made["id"])
        assert row.token_hash != token and token not in json.dumps(row.model_dump(mode="json"))
    otto = site.client(headers={"Authorization": f"Bearer {token}"})
    assert otto.get("/api/me").json() == {
        "actor": "otto", "role": "operator", "user_id": op["id"], "via": "token", "csrf": None,
    }  # fmt: skip
    assert otto.get("/api/users").status_code == 403
    # a read token of an operator reads only, and cannot mint itself a stronger one
    read = otto.post("/api/me/tokens", json={"scope": "read"}).json()["token"]
    reader = site.client(headers={"Authorization": f"Bearer {read}"})
    assert reader.get("/api/me").json()["role"] == "viewer"
    assert reader.post("/api/me/tokens", json={"scope": "operate"}).status_code == 403
    # another's token: only an admin revokes it
    vic = api.post("/api/users", json={"login": "vic", "role": "viewer"}).json()
    vic_tok = api.post(f"/api/users/{vic['id']}/tokens", json={"scope": "read"}).json()
    assert otto.delete(f"/api/tokens/{vic_tok['id']}").status_code == 403
    assert api.delete(f"/api/tokens/{made['id']}").status_code == 200
    assert otto.get("/api/me").status_code == 401
    # an expired token and a disabled person are refused
    with Session(site.app.state.engine) as s:
        row = s.get(ApiToken, vic_tok["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    assert site.client(headers={"Authorization": f"Bearer {vic_tok['token']}"}).get("/api/me").status_code == 401
    assert reader.get("/api/me").status_code == 200
    assert api.patch(f"/api/users/{op['id']}", json={"disabled": True}).status_code == 200
    assert reader.get("/api/me").status_code == 401
    assert site.client(headers={"Authorization": "Bearer fct_nope_nope"}).get("/api/me").status_code == 401
    actions = [(e["actor"], e["action"], e["outcome"]) for e in api.get("/api/audit?limit=50").json()["entries"]]
    assert ("token:bootstrap", "token.revoke", "ok") in actions
    assert ("otto", "token.revoke", "denied") in actions
    assert ("token:bootstrap", "user.create", "ok") in actions


def test_local_passwords(site):
    api = site.client(headers=BEARER)
    api.post("/api/users", json={"login": "lena", "role": "operator", "password": "correct horse battery"})
    c = site.client()
    assert c.post("/auth/local", json={"login": "lena", "password": "wrong password!!"}).status_code == 401
    assert c.post("/auth/local", json={"login": "ghost", "password": "wrong password!!"}).status_code == 401
    r = c.post("/auth/local", json={"login": "lena", "password": "correct horse battery"})
    assert r.status_code == 200 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=lax" in r.headers["set-cookie"].lower()
    assert c.get("/api/me").json()["role"] == "operator"
    with Session(site.app.state.engine) as s:
        stored = s.exec(text("SELECT password_hash FROM users WHERE login='lena'")).one()[0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    failed = api.get("/api/audit", params={"action": "auth.signin_failed"}).json()["entries"]
    assert {e["actor"] for e in failed} == {"local:lena", "local:ghost"}


def test_linked_identities_name_people_in_the_audit_log(site):
    api = site.client(headers=BEARER)
    alice = api.post("/api/users", json={"login": "alice", "role": "operator"}).json()
    r = api.post(f"/api/users/{alice['id']}/identities", json={"service": "github", "external_id": "octo-alice"})
    assert r.status_code == 201
    assert (
        api.post(
            f"/api/users/{alice['id']}/identities", json={"service": "github", "external_id": "octo-alice"}
        ).status_code
        == 409
    )
    engine = site.app.state.engine
    audit.record(engine, "github:octo-alice", "task.answer", "task:7", source="github", task_id=7)
    audit.record(engine, "github:mallory", "task.answer", "task:7", source="github", task_id=7)
    audit.record(engine, "telegram:5551", "task.answer", "task:8", source="telegram", task_id=8)
    rows = api.get("/api/audit", params={"task_id": 7}).json()["entries"]
    assert [(e["actor"], e["source"]) for e in rows] == [("github:mallory", "github"), ("alice", "github:octo-alice")]
    assert api.get("/api/audit", params={"actor": "alice"}).json()["entries"][0]["target"] == "task:7"


def test_audit_pages_export_and_retention(site):
    api = site.client(headers=BEARER)
    engine = site.app.state.engine
    for i in range(5):
        audit.record(engine, "agent:task-1", "task.retry", f"task:{i}")
    page = api.get("/api/audit", params={"action": "task.retry", "limit": 3}).json()
    assert len(page["entries"]) == 3 and page["next_cursor"]
    rest = api.get("/api/audit", params={"action": "task.retry", "limit": 3, "cursor": page["next_cursor"]}).json()
    assert len(rest["entries"]) == 2 and rest["next_cursor"] is None
    assert api.get("/api/audit", params={"limit": 0}).status_code == 422
    with api.stream("GET", "/api/audit/export") as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in r.iter_lines() if x]
    assert [x["target"] for x in lines if x["action"] == "task.retry"] == [f"task:{i}" for i in range(5)]
    with Session(engine) as s:
        old = s.get(AuditEntry, lines[0]["id"])
        old.at = utcnow() - timedelta(days=400)
        s.add(old)
        s.commit()
    assert prune_people(engine, timedelta(days=365)).counts.get("audit_entries") == 1
    assert prune_people(engine, None).counts.get("audit_entries") is None
    assert api.get("/api/audit?actor=agent:task-1").json()["entries"][-1]["target"] == "task:1"


def test_an_install_with_no_auth_stays_open_and_doctor_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=f"sqlite:///{tmp_path}/f.db")
    ok, line = auth_status(cfg)
    assert not ok and "open" in line
    from api.main import create_app

    app = create_app(cfg, connect_temporal=False)
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        assert c.get("/api/me").json()["actor"] == "anonymous"
        assert c.post("/api/users", json={"login": "x", "role": "viewer"}).status_code == 201
    ok, line = auth_status(cfg.model_copy(update={"auth": cfg.auth.model_copy(update={"local": True})}))
    assert ok and "local passwords" in line


def test_a_0001_database_with_tasks_upgrades_and_the_old_token_still_works(tmp_path, monkeypatch):
    from alembic import command

    from api.main import create_app
    from factory.store.schema import alembic_config, current_revision, head_revision

    monkeypatch.delenv("FACTORY_AUTH_TOKEN", raising=False)
    url = f"sqlite:///{tmp_path}/old.db"
    old = create_engine(url)
    with old.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO task (title, description, repo, agent_type, status, cost_usd, num_turns, created_at) "
            "VALUES ('old task', '', 'demo', 'coder', 'done', 0.5, 3, '2026-11-30 10:00:00.000000')"
        ))  # fmt: skip
    assert current_revision(old) == "0001"
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()  # 0002 (people and audit) and any later ones
    from pydantic import SecretStr

    cfg = FactoryConfig(data_dir=str(tmp_path), database_url=url, factory_auth_token=SecretStr(BOOT))
    from fastapi.testclient import TestClient

    with TestClient(create_app(cfg, engine=engine, connect_temporal=False)) as c:
        assert c.get("/api/tasks").status_code == 401
        tasks = c.get("/api/tasks", headers=BEARER).json()
        assert [t["title"] for t in tasks] == ["old task"]
        assert c.get("/api/me", headers=BEARER).json()["role"] == "admin"
        assert c.post("/api/users", json={"login": "new", "role": "viewer"}, headers=BEARER).status_code == 201


def test_people_module_never_stores_a_token_or_reuses_a_login(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    user = people.create_user(engine, "pat", "operator")
    row, token = people.create_token(engine, user.id, "operate", 1)
    assert token not in row.token_hash and row.prefix in token
    assert people.token_principal(engine, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    with pytest.raises(people.Taken):
        people.create_user(engine, "pat", "viewer")
    # a cookie is looked up by its hash only: the stored row never holds it
    cookie, csrf = people.create_session(engine, user.id, 1)
    assert people.session_principal(engine, cookie).csrf == csrf
    assert (
        people.session_principal(engine, people.digest(cookie) if hasattr(people, "digest") else cookie + "x") is None
    )


def test_a_token_whose_prefix_holds_an_underscore_still_signs_in(tmp_path, monkeypatch):
    """The row prefix is url-safe random text, so about one token in five has a "_" inside it: found by its
    length, not by the first "_" (which once made such a token a 401 from the moment it was made)."""
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    user = people.create_user(engine, "uma", "operator")
    secrets = iter(["ab_cd_ef", "the_rest-of_the_secret"])
    monkeypatch.setattr(people, "new_secret", lambda nbytes=32: next(secrets))
    row, token = people.create_token(engine, user.id, "operate", 1)
    assert token == "fct_ab_cd_ef_the_rest-of_the_secret" and row.prefix == "ab_cd_ef"
    assert people.token_principal(engine, token).actor == "uma"
    for bad in ("fct_ab_cd_ef", "fct_ab_cd_efXthe_rest-of_the_secret", "fct_ab_cd_e_the_rest-of_the_secret"):
        assert people.token_principal(engine, bad) is None
