"""The schema on real PostgreSQL and SQLite: migrations match the SQLModel tables, apply once under a
lock when many processes start together, adopt a database `create_all` made, and `postgresql://`
URLs work as users write them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import SQLModel

from factory.store import schema
from factory.store.tables import Task, make_engine, session_scope
from tests.pg import Postgres

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'factory.db'}"
    return request.getfixturevalue("postgres").database()


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    assert schema.current_revision(engine) == schema.head_revision()
    # a model changed without a migration (or the other way round) shows up here: add a migration
    assert schema.differences(engine) == []
    with session_scope(engine) as s:  # and the tables work
        s.add(Task(title="t", repo="o/r", changed_files=["a.py"]))
        s.commit()
        assert s.get(Task, 1).changed_files == ["a.py"]


def test_the_model_check_sees_a_drift(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text('ALTER TABLE "task" ADD COLUMN "stray" INTEGER'))
    assert any("stray" in repr(d) for d in schema.differences(engine))


def test_a_create_all_database_is_adopted(db_url: str) -> None:
    url = schema.sqlalchemy_url(db_url)
    legacy = create_engine(url)
    SQLModel.metadata.create_all(legacy)
    with legacy.begin() as conn:  # as made by an older Factory: a column and an index missing
        conn.execute(text("DROP INDEX ix_keyvalue_updated_at"))
        conn.execute(text('ALTER TABLE "keyvalue" DROP COLUMN "updated_at"'))
        conn.execute(text("INSERT INTO keyvalue (key, value) VALUES ('telegram:offset', '41')"))
    legacy.dispose()
    engine = make_engine(db_url)
    assert schema.current_revision(engine) == schema.head_revision()
    assert schema.differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM keyvalue")).scalar() == "41"


_START = (
    "import sys; from factory.store.tables import make_engine; from factory.store import schema; "
    "e = make_engine(sys.argv[1]); print(schema.current_revision(e))"
)


def test_processes_starting_together_all_come_up(db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _START, db_url], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == schema.head_revision()
    assert schema.differences(make_engine(db_url)) == []


def test_factory_db_upgrade(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"database_url: {db_url}\n")
    run = [sys.executable, "-m", "factory.cli", "db", "upgrade", "--config", str(config)]
    first = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"database at {schema.head_revision()} (was empty)" in first.stdout
    again = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "(already current)" in again.stdout


def test_postgres_urls_as_users_write_them(postgres: Postgres) -> None:
    url = postgres.database()
    assert schema.sqlalchemy_url(url).startswith("postgresql+psycopg://")
    assert schema.sqlalchemy_url(url.replace("postgresql://", "postgres://")).startswith("postgresql+psycopg://")
    engine = make_engine(url)
    assert engine.dialect.driver == "psycopg"
