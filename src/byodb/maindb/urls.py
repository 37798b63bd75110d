"""Turning PostgreSQL URLs into SQLAlchemy URLs for the sync and async psycopg drivers."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)


def sync_url(url: str) -> str:
    return _SCHEME.sub("postgresql+psycopg://", url, count=1)


def async_url(url: str) -> str:
    # psycopg 3 serves both; SQLAlchemy picks the async dialect from create_async_engine.
    return _SCHEME.sub("postgresql+psycopg://", url, count=1)


def libpq_url(url: str) -> str:
    return _SCHEME.sub("postgresql://", url, count=1)
