"""Alembic's environment: runs on the connection `factory.store.schema` hands it (under its lock).

`alembic -c factory/store/migrations/alembic.ini revision --autogenerate -m "..."` makes a new
migration from the difference between the SQLModel tables and the database named by
`FACTORY_DATABASE_URL` (a SQLite file by default).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import factory.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # the alembic command line
    url = os.environ.get("FACTORY_DATABASE_URL", "sqlite:///data/factory.db")
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
