"""The main database: app tables (accounts, settings, BYOD control records) and their
Alembic migrations, plus the embedded PostgreSQL used when no server is configured."""
