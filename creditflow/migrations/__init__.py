"""Alembic migrations of our tables (see creditflow/migrate.py): shipped with the package."""
