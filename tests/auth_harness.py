"""A real Factory API (uvicorn, SQLite) with people and sign-in configured, beside the OIDC and GitHub stand-ins.

No Temporal: these tests are about who may do what, which the API decides before a route runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from api.main import create_app
from factory.config import FactoryConfig
from tests.fakes.github import FakeGitHub
from tests.fakes.http import BackgroundServer
from tests.fakes.oidc import FakeOIDC

BOOT = "boot-token-8c1d27e4f0"
BEARER = {"Authorization": f"Bearer {BOOT}"}


@dataclass
class Site:
    url: str
    cfg: FactoryConfig
    app: Any
    oidc: FakeOIDC
    github: FakeGitHub

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def sign_in_oidc(self, who: str) -> httpx.Client:
        """A browser-like client that signed in through the OIDC stand-in as `who` (its cookies kept)."""
        self.oidc.next_user = who
        c = self.client(follow_redirects=True)
        r = c.get("/auth/oidc/start")
        assert r.url.path == "/", f"sign-in ended at {r.url}"
        return c

    def csrf(self, c: httpx.Client) -> str:
        me = c.get("/api/me")
        assert me.status_code == 200, me.text
        return me.json()["csrf"]


def all_routes(routes: list[Any], out: list[tuple[str, str]] | None = None) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, through included routers."""
    out = [] if out is None else out
    for r in routes:
        if hasattr(r, "effective_route_contexts"):
            for ctx in r.effective_route_contexts():
                out += [(m, ctx.path) for m in sorted(ctx.methods or [])]
        elif hasattr(r, "path"):
            out += [(m, r.path) for m in sorted(getattr(r, "methods", None) or ["GET"])]
    return out


@contextmanager
def factory_site(tmp: Path, **auth: Any) -> Iterator[Site]:
    oidc, github = FakeOIDC(), FakeGitHub()
    oidc.start()
    github.start()
    auth = {
        "oidc": {"issuer": oidc.issuer, "client_id": oidc.client_id},
        "github": {"client_id": github.oauth_client[0]},
        "admins": ["boss"],
        **auth,
    }
    cfg = FactoryConfig(
        data_dir=str(tmp / "data"), database_url=f"sqlite:///{tmp}/factory.db", workspace_root=str(tmp / "ws"),
        factory_auth_token=SecretStr(BOOT), oidc_client_secret=SecretStr(oidc.client_secret),
        github_oauth_client_secret=SecretStr(github.oauth_client[1]), auth=auth,
        github={"api_url": github.url, "web_url": github.url},
    )  # fmt: skip
    app = create_app(cfg, connect_temporal=False)
    try:
        with BackgroundServer(app) as url:
            yield Site(url, cfg, app, oidc, github)
    finally:
        oidc.stop()
        github.stop()
