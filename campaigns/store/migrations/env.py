"""Alembic environment: runs on the connection `campaigns.store.schema` hands it."""

from __future__ import annotations

from alembic import context

from campaigns.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand lands here
    raise SystemExit("run migrations with `campaigns init`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
