"""Alembic environment: migrates the database named by DATABASE_URL.

Each domain has its own migration branch on top of `0001_core`; apply them all with
`alembic upgrade heads`.
"""

from alembic import context
from sqlalchemy import create_engine, pool

from core.config import settings

config = context.config


def run_migrations_online() -> None:
    url = settings().database_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
