"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from reconciler.adapters.models import Base


def test_migrations_match_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_the_due_index_is_partial(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("payments")}
    finally:
        engine.dispose()
    due = indexes["ix_payments_due"]
    assert due["column_names"] == ["next_poll_at"]
    where = due.get("dialect_options", {})
    assert any("next_poll_at IS NOT NULL" in str(v) for v in where.values())
