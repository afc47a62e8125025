"""Alembic migrations, shipped inside the wheel as `reconciler.migrations`."""
