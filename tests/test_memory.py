"""Agent memory on a real embedded SurrealDB (surrealkv on temp paths).

The only stand-in is the embeddings API: a local OpenAI-compatible server
(tests/fakes/embeddings.py) with a small deterministic embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from temporalio.testing import ActivityEnvironment

from activities.memory import MemoryActivities, RecallInput, RememberTaskInput
from api.routes.memory import router
from factory.config import FactoryConfig
from factory.config_sections import EmbeddingsConfig, MemoryConfig
from factory.memory.recall import format_section
from factory.memory.records import MemoryRecord
from factory.memory.search import query_terms
from factory.memory.store import MemoryStore
from tests.fakes.embeddings import FakeEmbeddings
from tests.fakes.http import BackgroundServer, free_port

EMBED_KEY = "sk-embedtestkey0123456789abcdef"

CORPUS = [
    MemoryRecord(
        repo="acme/web",
        title="Improve performance of the dashboard rendering",
        summary="Memoized the chart components and virtualized the orders table; the dashboard now renders in 300 ms.",
        learnings=["Profile with the React profiler before optimizing", "Charts re-rendered on every websocket tick"],
        files=["src/dashboard/Dashboard.tsx"],
        outcome="completed",
        task_id=1,
        agent_type="coder",
    ),
    MemoryRecord(
        repo="acme/web",
        title="Fix login redirect after OAuth",
        summary="The session cookie was dropped on the OAuth callback because SameSite was Strict.",
        learnings=["Use SameSite=Lax for the session cookie"],
        files=["src/auth/callback.ts"],
        outcome="completed",
        task_id=2,
        agent_type="coder",
    ),
    MemoryRecord(
        repo="acme/api",
        title="Migrate the database to Postgres 16",
        summary="Moved from Postgres 13 to 16 with pg_upgrade; rewrote two migrations that used removed functions.",
        learnings=["Run the migrations against a copy of production first"],
        outcome="completed",
        task_id=3,
        agent_type="devops",
    ),
    MemoryRecord(
        repo="acme/api",
        title="Add CSV export to the reports endpoint",
        summary="The reports endpoint streams CSV with a generator so large exports do not exhaust memory.",
        learnings=["StreamingResponse keeps memory flat for big exports"],
        outcome="completed",
        task_id=4,
        agent_type="coder",
    ),
    MemoryRecord(
        repo="acme/mobile",
        title="Send email notifications for failed payments",
        summary="A worker sends an email through SMTP when a payment fails; retries with backoff.",
        learnings=["The SMTP relay rate-limits at 10 messages per second"],
        outcome="completed",
        task_id=5,
        agent_type="coder",
    ),
]


@pytest.fixture(autouse=True)
def _no_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # the environment takes precedence over init kwargs for secrets; keep the developer's out
    for name in ("OPENAI_API_KEY", "SURREALDB_URL", "SURREALDB_USER", "SURREALDB_PASS", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")  # no stray .env


@pytest.fixture(scope="module")
def fake_embeddings() -> Iterator[tuple[FakeEmbeddings, str]]:
    fake = FakeEmbeddings()
    with BackgroundServer(fake.app) as url:
        yield fake, url


@pytest.fixture
def fake(fake_embeddings: tuple[FakeEmbeddings, str]) -> FakeEmbeddings:
    emb, _ = fake_embeddings
    emb.calls.clear()
    emb.fail = False
    return emb


def make_cfg(tmp_path, embeddings_url: str | None = None, **kw) -> FactoryConfig:
    memory = MemoryConfig(
        embeddings=EmbeddingsConfig(base_url=embeddings_url + "/v1", model="fake-embed", api_key_env="FAKE_EMBED_KEY")
        if embeddings_url
        else None,
        **kw.pop("memory", {}),
    )
    return FactoryConfig(data_dir=str(tmp_path), memory=memory, **kw)


async def filled(cfg: FactoryConfig, **kw) -> MemoryStore:
    store = await MemoryStore.open(cfg, **kw)
    ids = await store.add_many(CORPUS)
    assert len(ids) == len(CORPUS)
    return store


@pytest.fixture
async def bm25_store(tmp_path) -> MemoryStore:
    store = await filled(make_cfg(tmp_path / "bm25"))
    yield store
    await store.close()


@pytest.fixture
async def hybrid_store(tmp_path, fake, fake_embeddings, monkeypatch) -> MemoryStore:
    monkeypatch.setenv("FAKE_EMBED_KEY", EMBED_KEY)
    store = await filled(make_cfg(tmp_path / "hybrid", fake_embeddings[1]), retry_after=0)
    yield store
    await store.close()


def titles(hits) -> list[str]:
    return [h.record.title for h in hits]


async def test_bm25_finds_related_not_unrelated(bm25_store: MemoryStore) -> None:
    hits = await bm25_store.search("the dashboard renders slowly, optimize the charts")
    assert titles(hits)[0] == "Improve performance of the dashboard rendering"
    assert "Migrate the database to Postgres 16" not in titles(hits)
    assert all(h.bm25 and h.bm25 > 0 for h in hits)
    assert await bm25_store.search("kubernetes helm zookeeper cluster") == []
    assert (await bm25_store.health())["status"] == "ok"


async def test_same_repo_ranked_first(tmp_path) -> None:
    store = await MemoryStore.open(make_cfg(tmp_path))
    twin = dict(title="Flaky checkout test", summary="The checkout test raced the payment mock; awaited the mock.")
    a = await store.add(MemoryRecord(repo="acme/a", **twin))
    b = await store.add(MemoryRecord(repo="acme/b", **twin))
    assert [h.id for h in await store.search("flaky checkout test", repo="acme/b")] == [b, a]
    assert [h.id for h in await store.search("flaky checkout test", repo="acme/a")] == [a, b]
    await store.close()


async def test_hybrid_finds_paraphrase_bm25_misses(bm25_store: MemoryStore, hybrid_store: MemoryStore, fake) -> None:
    query = "speed up slow page loads"
    target = "Improve performance of the dashboard rendering"
    assert target not in titles(await bm25_store.search(query, repo="acme/web"))

    fake.calls.clear()
    hits = await hybrid_store.search(query, repo="acme/web")
    assert target in titles(hits)[:3]
    assert titles(hits)[0] == target
    hit = hits[0]
    assert hit.similarity is not None and hit.similarity > 0.3 and hit.bm25 is None
    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["input"] == [query] and call["model"] == "fake-embed"
    assert call["authorization"] == f"Bearer {EMBED_KEY}"
    assert (await hybrid_store.health())["status"] == "ok"


async def test_embeddings_failure_falls_back_to_bm25_with_one_warning(hybrid_store, fake, caplog) -> None:
    caplog.set_level(logging.INFO, logger="factory.memory.store")
    fake.fail = True
    fake.calls.clear()
    for _ in range(3):
        hits = await hybrid_store.search("login redirect cookie", repo="acme/web")
        assert titles(hits)[0] == "Fix login redirect after OAuth"
    new_id = await hybrid_store.add(MemoryRecord(repo="acme/web", title="Dark mode toggle", summary="Added a toggle."))
    assert new_id and await hybrid_store.get(new_id)  # stored without an embedding
    assert len(fake.calls) == 4
    warnings = [r for r in caplog.records if r.name == "factory.memory.store" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "embeddings unavailable" in warnings[0].getMessage()
    health = await hybrid_store.health()
    assert health["status"] == "degraded" and "embeddings" in health["detail"]

    fake.fail = False
    assert await hybrid_store.backfill_embeddings() == 1
    assert "Dark mode toggle" in titles(await hybrid_store.search("toggle dark mode"))
    assert (await hybrid_store.health())["status"] == "ok"


async def test_unreachable_server_degrades(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="factory.memory.store")
    cfg = make_cfg(
        tmp_path, surrealdb_url=f"ws://127.0.0.1:{free_port()}/rpc", surrealdb_user="root", surrealdb_pass="hunter22pw"
    )
    store = await MemoryStore.open(cfg, timeout=3, retry_after=0)
    assert not store.available
    assert await store.add(CORPUS[0]) is None
    assert await store.search("dashboard") == []
    assert await store.get("anything") is None
    assert await store.delete("anything") is False
    assert await store.recent() == []
    assert await store.recall_section("Dashboard", "slow", "acme/web") == ""
    health = await store.health()
    assert health["status"] == "degraded" and "unavailable" in health["detail"]
    assert len([r for r in caplog.records if r.name == "factory.memory.store"]) == 1
    await store.close()


async def test_disabled(tmp_path) -> None:
    store = await MemoryStore.open(make_cfg(tmp_path, memory={"enabled": False}))
    assert await store.add(CORPUS[0]) is None
    assert await store.search("dashboard") == []
    assert await store.health() == {"status": "disabled", "detail": "memory.enabled is false"}
    assert not (tmp_path / "memory").exists()
    await store.close()


async def test_secrets_are_redacted(tmp_path, fake, fake_embeddings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EMBED_KEY", EMBED_KEY)
    cfg = make_cfg(tmp_path, fake_embeddings[1], github_token="configured-token-value-42")
    store = await MemoryStore.open(cfg)
    leaks = [
        "configured-token-value-42",
        "sk-proj-abcdefghijklmnopqrstuvwx",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "github_pat_11ABCDEFG0123456789_abcdefghij",
        "xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
        "plane_api_0123456789abcdef",
        EMBED_KEY,
    ]
    mid = await store.add(
        MemoryRecord(
            repo="acme/web",
            title=f"Rotate credentials {leaks[0]}",
            summary="Found " + ", ".join(leaks[1:5]) + " in the logs",
            learnings=[f"header was {leaks[6]}", f"plane key {leaks[7]} and {leaks[8]}"],
            files=["config/.env"],
            pr_url="https://x-access-token:ghs_abcdefghijklmnopqrstuvwxyz@github.com/acme/web/pull/1",
        )
    )
    rec = await store.get(mid)
    rows = await store.db.query("SELECT * FROM memory")  # the stored row, computed text included
    stored = repr(rows) + repr(rec) + repr([c["input"] for c in fake.calls])
    for leak in [*leaks, "ghs_abcdefghijklmnopqrstuvwxyz"]:
        secret = leak.removeprefix("Bearer ")
        assert secret not in stored, secret
    assert "***" in rec.title and rec.learnings[0] == "header was Bearer ***"
    await store.search(f"credentials {leaks[1]}")
    assert leaks[1] not in repr([c["input"] for c in fake.calls])
    await store.close()


async def test_recall_section_and_activities(hybrid_store: MemoryStore) -> None:
    section = await hybrid_store.recall_section(
        "Dashboard is sluggish", "Users say the page loads slowly. Make it faster.", "acme/web"
    )
    assert section.startswith("## Relevant past work")
    assert "### Improve performance of the dashboard rendering (acme/web, completed," in section
    assert "- Profile with the React profiler before optimizing" in section
    assert "Files: src/dashboard/Dashboard.tsx" in section
    assert len(section) <= hybrid_store.cfg.memory.max_prompt_chars
    assert await hybrid_store.recall_section("Quantum zebra", "xylophone", "acme/web") == ""

    acts = MemoryActivities(hybrid_store)
    env = ActivityEnvironment()
    inp = RememberTaskInput(
        repo="acme/web",
        task_id=77,
        workflow_id=9,
        agent_type="coder",
        title="Paginate the audit log",
        outcome="completed",
        summary="The audit log page fetched every row; added keyset pagination.",
        learnings=["Keyset pagination on (created_at, id) avoids OFFSET scans"],
        files=["src/audit/AuditLog.tsx"],
        pr_url="https://github.com/acme/web/pull/77",
    )
    first = await env.run(acts.remember_task, inp)
    assert first and await env.run(acts.remember_task, inp) == first  # a retry overwrites
    assert len([h for h in await hybrid_store.recent(limit=50) if h.record.task_id == 77]) == 1
    assert await hybrid_store.db.query("RETURN memory_term:keyset.df") == 1  # terms counted once, too
    text = await env.run(acts.recall_memories, RecallInput("Audit log is slow", "paginate the audit log", "acme/web"))
    assert "Paginate the audit log" in text and "PR: https://github.com/acme/web/pull/77" in text
    own = RecallInput("Audit log pagination", "paginate the audit log", "acme/web", task_id=77)
    assert "Paginate the audit log" not in await env.run(acts.recall_memories, own)


def test_format_section_is_bounded() -> None:
    hits = [
        type("H", (), {"record": MemoryRecord(repo="r", title=f"T{i}", summary="x " * 400, learnings=["l"] * 5)})()
        for i in range(10)
    ]
    out = format_section(hits, 1500)
    assert out.startswith("## Relevant past work") and len(out) <= 1500 and "### T0" in out and "### T9" not in out
    assert format_section([], 1500) == ""
    assert query_terms("The dashboard's page is SLOW, slow!") == ["dashboard", "page", "slow"]


async def test_common_words_are_not_scored(tmp_path) -> None:
    store = await MemoryStore.open(make_cfg(tmp_path))
    await store.add_many(
        [MemoryRecord(repo="r", title=f"Checkout step {i}", summary="checkout flow") for i in range(5)]
    )
    stripe = await store.add(MemoryRecord(repo="r", title="Checkout via Stripe", summary="stripe checkout"))
    assert len(await store.search("stripe checkout", limit=10)) == 6
    store.bm25_budget = 3  # "checkout" is in 6 memories: over budget, so only "stripe" is looked up
    assert [h.id for h in await store.search("stripe checkout", limit=10)] == [stripe]
    assert await store.search("checkout flow") == []
    assert await store.db.query("RETURN memory_term:checkout.df") == 6
    assert await store.delete(stripe)
    assert await store.db.query("RETURN [memory_term:checkout.df, memory_term:stripe.df]") == [5, 0]
    await store.close()


async def test_persists_and_reconnects_idempotently(tmp_path) -> None:
    cfg = make_cfg(tmp_path)
    store = await MemoryStore.open(cfg)
    mid = await store.add(CORPUS[2])
    await store.close()
    again = await MemoryStore.open(cfg)  # schema is defined again, idempotently
    assert (await again.get(mid)).title == CORPUS[2].title
    assert [h.id for h in await again.search("postgres migration")] == [mid]
    await again.close()


async def test_embedding_model_change_reindexes(tmp_path, fake, fake_embeddings, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_EMBED_KEY", EMBED_KEY)
    url = fake_embeddings[1]
    small = make_cfg(tmp_path, url)
    small.memory.embeddings.dimensions = 32
    store = await filled(small)
    assert (await store.search("speed up slow page loads"))[0].similarity is not None
    await store.close()

    store = await MemoryStore.open(make_cfg(tmp_path, url))  # 256 dimensions now
    hits = await store.search("speed up slow page loads")
    assert all(h.similarity is None for h in hits)  # old vectors were dropped, not mixed
    assert await store.backfill_embeddings() == len(CORPUS)
    hits = await store.search("speed up slow page loads", repo="acme/web")
    assert hits[0].record.title == CORPUS[0].title and hits[0].similarity is not None
    await store.close()

    store = await MemoryStore.open(make_cfg(tmp_path, url))  # indexes rebuilt above survive a reopen
    hits = await store.search("speed up slow page loads", repo="acme/web")
    assert hits[0].record.title == CORPUS[0].title and hits[0].similarity is not None
    assert titles(await store.search("postgres migrations"))[0] == CORPUS[2].title
    await store.close()


async def test_batch_add_survives_reopen(tmp_path, fake, fake_embeddings, monkeypatch) -> None:
    # regression: index entries written by one FOR loop over many records were lost on reopen
    monkeypatch.setenv("FAKE_EMBED_KEY", EMBED_KEY)
    cfg = make_cfg(tmp_path, fake_embeddings[1])
    notes = [
        MemoryRecord(repo="acme/web", title=f"Checkout note {i}", summary=f"checkout step {i} needs care", kind="note")
        for i in range(40)
    ]
    knn = "SELECT id FROM memory WHERE embedding <|40,64|> $v"
    store = await MemoryStore.open(cfg)
    ids = await store.add_many(notes, batch=20)
    vector = (await store.embed(["checkout step"]))[0]
    near = {str(r["id"]) for r in await store.db.query(knn, {"v": vector})}
    await store.close()
    store = await MemoryStore.open(cfg)
    assert {h.id for h in await store.search("checkout", limit=100) if h.bm25 is not None} == set(ids)
    assert {str(r["id"]) for r in await store.db.query(knn, {"v": vector})} == near
    await store.close()


async def test_memory_api(bm25_store: MemoryStore) -> None:
    app = FastAPI()
    app.state.memory = bm25_store
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/api/memory", params={"q": "oauth login cookie", "repo": "acme/web"})
        assert r.status_code == 200
        body = r.json()
        assert body[0]["title"] == "Fix login redirect after OAuth" and body[0]["score"] > 0 and body[0]["id"]

        r = await client.post(
            "/api/memory",
            json={
                "repo": "acme/web",
                "content": "Staging deploys need the VPN.\nAsk ops for access.",
                "learnings": ["VPN"],
            },
        )
        assert r.status_code == 201, r.text
        note = r.json()
        assert note["kind"] == "note" and note["title"] == "Staging deploys need the VPN."
        assert note["learnings"] == ["VPN"]

        recent = (await client.get("/api/memory", params={"limit": 2})).json()
        assert recent[0]["id"] == note["id"] and len(recent) == 2
        found = (await client.get("/api/memory", params={"q": "staging vpn"})).json()
        assert found[0]["id"] == note["id"]

        r = await client.get(f"/api/memory/{note['id']}")
        assert r.status_code == 200 and r.json()["summary"].startswith("Staging deploys")
        assert (await client.delete(f"/api/memory/{note['id']}")).status_code == 204
        assert (await client.get(f"/api/memory/{note['id']}")).status_code == 404
        assert (await client.delete(f"/api/memory/{note['id']}")).status_code == 404
        assert (await client.post("/api/memory", json={"repo": "acme/web", "content": "  "})).status_code == 422
        assert (await client.post("/api/memory", json={"repo": "acme/web"})).status_code == 422
