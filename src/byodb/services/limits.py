"""Input limits of the content API (documented in docs/api.md)."""

MAX_TITLE_CHARS = 500
MAX_MESSAGE_CHARS = 100_000
MAX_LIST_LIMIT = 200
