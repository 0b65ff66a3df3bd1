"""The database schema: Alembic migrations applied once, under a lock, by whichever process comes first.

`factory db upgrade` applies them, and so does every process at start (`make_engine`): the first to
get the lock migrates, the others wait on it and find the schema current. PostgreSQL serialises
them with an advisory lock, SQLite with the file lock of a sidecar file (`<database>.migrate.lock`).
A database made before migrations existed (by `create_all`) is brought up to date and stamped.
"""

from __future__ import annotations

import fcntl
import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

ADVISORY_LOCK_KEY = 0x46AC7042  # any fixed bigint; names Factory's migration lock among the database's
"""The PostgreSQL advisory lock every Factory process takes to migrate."""

log = logging.getLogger("factory.schema")
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at every start


def sqlalchemy_url(url: str) -> str:
    """The URL as SQLAlchemy takes it: `postgresql://` and `postgres://`, as users write them, use psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config for Factory's migrations, running on `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "factory/store/migrations/versions holds no migration"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return _revision_on(conn)


def upgrade(engine: Engine) -> bool:
    """Bring the database to the newest migration; True when this call changed it.

    Cheap when the schema is current (one query, no lock), so every process can call it at start.
    """
    if current_revision(engine) == head_revision():
        return False
    with _migration_lock(engine) as conn:
        if _revision_on(conn) == head_revision():  # another process migrated while this one waited
            return False
        insp = inspect(conn)
        if not insp.has_table("alembic_version") and any(insp.has_table(t) for t in SQLModel.metadata.tables):
            log.info("adopting a database made before migrations")
            _adopt_legacy(conn)
            command.stamp(alembic_config(conn), "head")
        else:
            log.info("migrating the database to %s", head_revision())
            command.upgrade(alembic_config(conn), "head")
        conn.commit()
    return True


def _revision_on(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection held under the migration lock (PostgreSQL advisory lock, or a sidecar file's lock)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()  # whatever the migration left open, so the unlock runs
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.connect() as conn:  # a private database: no other process can see it
            yield conn
        return
    with open(f"{database}.migrate.lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _adopt_legacy(conn: Connection) -> None:
    """Give a `create_all` database what the tables gained since it was made, before stamping it current.

    Tables and indexes come from `create_all`; nullable columns are added one by one (`create_all`
    adds none to a table that exists).
    """
    SQLModel.metadata.create_all(conn)
    existing = inspect(conn)
    for table in SQLModel.metadata.sorted_tables:
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable or column.primary_key:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
        for index in table.indexes:
            try:
                with conn.begin_nested():
                    index.create(conn, checkfirst=True)
            except DBAPIError:  # an index of the same name over other columns: leave it to a migration
                log.warning("index %s not created on the adopted database", index.name)


def differences(engine: Engine) -> list[object]:
    """What the migrated database lacks or has beyond the SQLModel tables (alembic's autogenerate compare)."""
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "target_metadata": SQLModel.metadata})
        return [d for d in compare_metadata(ctx, SQLModel.metadata) if not _is_alembic_own(d)]


def _is_alembic_own(diff: object) -> bool:
    return isinstance(diff, tuple) and len(diff) > 1 and getattr(diff[1], "name", None) == "alembic_version"
