"""Turning PostgreSQL URLs into SQLAlchemy URLs for the sync and async psycopg drivers."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SCHEME = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)


def sync_url(url: str) -> str:
    return _SCHEME.sub("postgresql+psycopg://", url, count=1)


def async_url(url: str) -> str:
    # psycopg 3 serves both; SQLAlchemy picks the async dialect from create_async_engine.
    return _SCHEME.sub("postgresql+psycopg://", url, count=1)


def libpq_url(url: str) -> str:
    return _SCHEME.sub("postgresql://", url, count=1)


def redacted_url(url: str) -> str:
    """``url`` fit to print: the password (in the netloc or a ``password=`` option) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:****@{hosts}"
    query = "&".join(
        f"{key}=****" if key.lower() == "password" else f"{key}={value}" if sep else key
        for key, sep, value in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
