"""Alembic environment: always handed a live connection by ``uploads_api.db.migrate``."""

from __future__ import annotations

from alembic import context

from uploads_api.db.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
