"""Input limits of the content API, in one place (documented in docs/api.md).

The services enforce them (so every caller gets the same rules), the API's request
models repeat them as pydantic ``Field`` limits (so OpenAPI documents them), and data moves
check every row read from a user's database against them before it reaches main.
"""

MAX_TITLE_CHARS = 500
MAX_MESSAGE_CHARS = 100_000
MAX_LIST_LIMIT = 200
MAX_LIST_OFFSET = 100_000

MAX_SHORT_TEXT_CHARS = 200
"""Names of things: models, tools, voices, colours, icons, languages, MIME types, members."""

MAX_CATEGORY_CHARS = 100
"""A memory's category, as a client writes it."""

MAX_TEXT_CHARS = 10_000
"""Any other text field (descriptions, snippets of sources, notes on bookmarks, errors)."""

MAX_URL_CHARS = 2_048
MAX_HASH_CHARS = 128
HASH_PATTERN = r"^[A-Za-z0-9_.:-]+$"
"""A TTS cache hash: it appears in URLs, so only URL-safe characters."""

MAX_JSON_BYTES = 256 * 1024
"""A JSON field (tool arguments and results, slide content, template config), as UTF-8."""

MAX_INLINE_BYTES = 5 * 1024 * 1024
"""Bytes sent inline as base64 in JSON (attachment content, TTS audio), after decoding."""

MAX_FILE_BYTES = 10 * 1024 * 1024
"""Largest uploaded file (10 MiB): the bytes live in a database row, on databases users pay
for."""

MAX_FILENAME_CHARS = 255
"""A stored file's name (an attachment's ``filename`` is a name of things, see above)."""

MAX_MESSAGES_LISTED = 1_000
"""Messages one listing of a conversation returns (the newest): with the per-row bounds,
what a listing loads from a user's database stays bounded however many rows it holds."""

MAX_INTEGER = 2_147_483_647
"""Integers are PostgreSQL ``integer`` columns (positions, slide numbers)."""

MAX_TTS_TTL_DAYS = 365
DEFAULT_TTS_TTL_DAYS = 30

TEXT_LIMITS: dict[str, int] = {
    "title": MAX_TITLE_CHARS,
    "name": MAX_TITLE_CHARS,
    "content": MAX_MESSAGE_CHARS,
    "url": MAX_URL_CHARS,
    "hash": MAX_HASH_CHARS,
    "model": MAX_SHORT_TEXT_CHARS,
    "tool_name": MAX_SHORT_TEXT_CHARS,
    "member_id": MAX_SHORT_TEXT_CHARS,
    "filename": MAX_SHORT_TEXT_CHARS,
    "mime_type": MAX_SHORT_TEXT_CHARS,
    "color": MAX_SHORT_TEXT_CHARS,
    "icon": MAX_SHORT_TEXT_CHARS,
    "language": MAX_SHORT_TEXT_CHARS,
    "theme": MAX_SHORT_TEXT_CHARS,
    "voice": MAX_SHORT_TEXT_CHARS,
    "event_type": MAX_SHORT_TEXT_CHARS,
    "subject_type": MAX_SHORT_TEXT_CHARS,
}
"""Longest text per field name; any text field not named here gets ``MAX_TEXT_CHARS``."""


def text_limit(field: str) -> int:
    return TEXT_LIMITS.get(field, MAX_TEXT_CHARS)


STORED_FIELD_LIMITS: dict[tuple[str, str], int] = {
    ("conversations", "system_prompt"): MAX_MESSAGE_CHARS,
    ("files", "filename"): MAX_FILENAME_CHARS,
    ("files", "content"): MAX_FILE_BYTES,
}
"""(table, column) whose API limit is not the one its name or type gives (``text_limit``,
``MAX_JSON_BYTES``, ``MAX_INLINE_BYTES``); reads of stored rows are bounded by these."""
