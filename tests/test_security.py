"""Auth, bad input, unsafe repo names, and secrets that must never leak."""

from __future__ import annotations

import sqlite3

import pytest

from factory.config import load_config
from factory.git.repos import RepoError, git_env, resolve_repo
from tests.fakes.anthropic import Text, ToolUse

SECRETS = {
    "FACTORY_AUTH_TOKEN": "auth-token-5d1f0e9c7b",
    "GITHUB_TOKEN": "ghp_testtokenAAAAAAAAAAAAAAAAAAAAAAAA1",
    "PLANE_API_KEY": "plane_api_secretkey123456",
    "TELEGRAM_BOT_TOKEN": "123456789:AAtelegramsecretsecretsecretsecret12",
}


@pytest.fixture
def secrets_env(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    return SECRETS


async def test_auth_is_required_on_api_but_not_health(start_factory, secrets_env):
    async with start_factory() as h:
        token = h.api.headers.pop("Authorization")
        assert (await h.api.get("/api/tasks")).status_code == 401
        r = await h.api.get("/api/tasks", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "bearer token" in r.json()["detail"]
        assert (await h.api.post("/api/tasks", json={"title": "x", "repo": "demo"})).status_code == 401
        assert (await h.api.get("/health")).status_code == 200
        assert (await h.api.get("/api/tasks", headers={"Authorization": token})).status_code == 200


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"title": "", "repo": "demo"}, "title"),
        ({"title": "   ", "repo": "demo"}, "title must not be empty"),
        ({"title": "x", "repo": "demo", "agent_type": "hacker"}, "unknown agent_type"),
        ({"title": "x", "repo": "-uupload-pack=touch /tmp/pwned"}, "must not start with '-'"),
        ({"title": "x", "repo": "../../etc"}, "must not contain '..'"),
        ({"title": "x", "repo": "acme/my repo"}, "whitespace"),
        ({"title": "x", "repo": "ext::sh -c touch% /tmp/pwned"}, "whitespace"),
        ({"title": "x", "repo": "a/b/c"}, "owner/repo"),
        ({"title": "x", "repo": "nosuchrepo"}, "no default_org"),
        ({"title": "x"}, "repo"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(start_factory, body, fragment):
    async with start_factory() as h:
        r = await h.api.post("/api/tasks", json=body)
        assert r.status_code == 422, r.text
        assert fragment in r.json()["detail"]
        assert (await h.api.get("/api/tasks")).json() == []  # nothing half written


async def test_unknown_ids_and_double_runs(start_factory, model):
    model.add_scenario("quick", [Text("nothing to do")])
    async with start_factory() as h:
        assert (await h.api.get("/api/tasks/999")).status_code == 404
        assert (await h.api.post("/api/tasks/999/run")).status_code == 404
        assert (await h.api.post("/api/tasks/999/cancel")).status_code == 404
        assert (await h.api.get("/api/tasks/999/logs")).status_code == 404
        assert (await h.api.get("/api/tasks?status=bogus")).status_code == 422
        t = await h.create("Twice", "quick", run=False)
        assert (await h.api.post(f"/api/tasks/{t['id']}/run")).status_code == 202
        again = await h.api.post(f"/api/tasks/{t['id']}/run")
        assert again.status_code == 409
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done" and done["pr_url"] is None
        assert "no changes" in done["note"]
        assert (await h.api.post(f"/api/tasks/{t['id']}/run")).status_code == 409


def test_unknown_repos_are_checked_and_file_urls_refused(tmp_path):
    cfg = load_config(tmp_path / "none.yml", default_org="acme")
    ref = resolve_repo(cfg, "widgets")
    assert ref.url == "https://github.com/acme/widgets.git" and ref.github == "acme/widgets"
    assert resolve_repo(cfg, "other/thing").github == "other/thing"
    cfg2 = load_config(tmp_path / "none.yml", repos={"local": {"url": "file:///tmp/x.git"}}, default_org="acme")
    assert resolve_repo(cfg2, "local").url == "file:///tmp/x.git"
    bad = load_config(tmp_path / "none.yml", repos={"x": {"url": "ext::sh -c id"}})
    with pytest.raises(RepoError):
        resolve_repo(bad, "x")


def test_git_token_goes_in_a_header_never_a_url(tmp_path, secrets_env):
    cfg = load_config(tmp_path / "none.yml")
    env = git_env(cfg, "https://github.com/acme/x.git")
    assert "GITHUB_TOKEN" not in env
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraheader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert secrets_env["GITHUB_TOKEN"] not in env["GIT_CONFIG_VALUE_0"]  # base64, and only in git's env
    assert "GIT_CONFIG_COUNT" not in git_env(cfg, "file:///tmp/x.git")


async def test_no_secret_reaches_the_agent_logs_or_database(start_factory, model, secrets_env, tmp_path):
    model.add_scenario(
        "leak",
        [
            [ToolUse("Bash", {"command": "env | sort; git remote -v; cat .git; echo TOKEN=$GITHUB_TOKEN"})],
            [ToolUse("Write", {"file_path": "x.txt", "content": "x\n"})],
            Text(f"my key is {secrets_env['GITHUB_TOKEN']} and the bot is {secrets_env['TELEGRAM_BOT_TOKEN']}"),
        ],
    )
    async with start_factory() as h:
        t = await h.create("Try to leak", "leak")
        done = await h.wait_for(t["id"], {"done", "failed"})
        assert done["status"] == "done", done
        await h.settled(t["id"])
        # what the agent's own Bash saw (sent to the model unscrubbed): Factory's context, no secrets
        seen = "\n".join(r.all_text for r in model.requests_for("leak"))
        assert f"FACTORY_TASK_ID={t['id']}" in seen
        for name, value in secrets_env.items():
            assert value not in seen, f"{name} reached the agent"
        # the database holds no secret, even the one the agent typed out
        db = sqlite3.connect(h.cfg.data_path / "factory.db")
        dump = "\n".join(db.iterdump())
        assert "my key is" in dump
        for name, value in secrets_env.items():
            rows = [row[:300] for row in dump.splitlines() if value in row]
            assert not rows, f"{name} is in the database: {rows}"
        # nor does any git config of the mirror
        for cfgfile in h.cfg.workspace_path.rglob("config"):
            text = cfgfile.read_text(errors="replace")
            assert all(v not in text for v in secrets_env.values())
