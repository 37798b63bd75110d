"""ChatGPT and Claude exports as import sources: their ``conversations.json``.

Both are one JSON list of conversations, read one conversation at a time and checked as it
is read (``portability.jsonstream``): each at most ``ImportLimits.conversation_bytes`` of
JSON and ``conversation_values`` values. What they hold becomes conversations
and messages; ids are derived from the source's own ids (``portability.ids``).

ChatGPT: ``mapping`` is a tree of nodes (``parent``, ``children``, ``message`` with
``author.role``, ``content.parts``, ``create_time`` in epoch seconds). Messages of the roles
byodb has (user, assistant, system) with text become messages; the others (tool output,
hidden system prompts, empty nodes) are left out and their children attach to the nearest
kept ancestor, so branches stay branches.

Claude: ``chat_messages`` (``uuid``, ``sender`` human/assistant, ``text`` or ``content``
parts, ``created_at`` ISO 8601). A message answers ``parent_message_uuid`` when the export
has it, else the message before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from byodb.content.limits import MAX_MESSAGE_CHARS, MAX_SHORT_TEXT_CHARS, MAX_TITLE_CHARS
from byodb.services.portability.archive import ImportInvalid, ImportLimits
from byodb.services.portability.ids import derived_id
from byodb.services.portability.jsonstream import JsonLimits, bounded_items

Row = dict[str, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def chat_limits(limits: ImportLimits) -> JsonLimits:
    """What one conversation may hold: ``conversation_bytes`` of JSON, ``conversation_values``
    values."""
    return JsonLimits(item_bytes=limits.conversation_bytes,
                      item_values=limits.conversation_values, items=limits.rows)


def detect(first: Any) -> str:
    """``chatgpt`` or ``claude`` by the first conversation's keys."""
    if isinstance(first, dict) and "mapping" in first:
        return "chatgpt"
    if isinstance(first, dict) and "chat_messages" in first:
        return "claude"
    raise ImportInvalid("conversations.json is neither a ChatGPT nor a Claude export "
                        "(its conversations have no mapping or chat_messages)")


# --- checks ----------------------------------------------------------------------------------


def _text(value: Any, where: str, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ImportInvalid(f"{where}: {field} must be text")
    if len(value) > limit:
        raise ImportInvalid(f"{where}: {field} is longer than {limit} characters, the app's "
                            "limit", hint="Nothing was imported. Shorten it in the file, or "
                            "remove that conversation, then import again.")
    if "\x00" in value:
        raise ImportInvalid(f"{where}: {field} contains a NUL character")
    return value


def _epoch(value: Any, where: str, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImportInvalid(f"{where}: {field} must be a number of seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ImportInvalid(f"{where}: {field} is not a valid time") from None


def _iso(value: Any, where: str, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImportInvalid(f"{where}: {field} must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ImportInvalid(f"{where}: {field} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _conversation_row(user_id: str, conversation_id: Any, title: str | None,
                      model: str | None, created: datetime, updated: datetime,
                      messages: list[Row]) -> Row:
    last = max((m["created_at"] for m in messages), default=None)
    return {"id": conversation_id, "user_id": user_id, "title": title, "model": model,
            "system_prompt": None, "is_archived": False, "is_pinned": False,
            "last_message_at": last, "message_count": len(messages),
            "created_at": created, "updated_at": max(updated, last or updated)}


def _message_row(user_id: str, message_id: Any, conversation_id: Any, role: str,
                 content: str, created: datetime, parent: Any, branch: int,
                 model: str | None) -> Row:
    return {"id": message_id, "conversation_id": conversation_id, "user_id": user_id,
            "role": role, "content": content, "model": model, "status": "complete",
            "parent_message_id": parent, "branch_index": branch, "created_at": created,
            "updated_at": created}


def _branch_indexes(messages: list[Row]) -> None:
    """Siblings (same parent) numbered by time: 0 for the first answer, 1, 2… for the
    alternatives, as byodb numbers branches."""
    seen: dict[Any, int] = {}
    for message in sorted(messages, key=lambda m: (m["created_at"], str(m["id"]))):
        parent = message["parent_message_id"]
        message["branch_index"] = seen.get(parent, 0)
        seen[parent] = message["branch_index"] + 1


# --- ChatGPT ---------------------------------------------------------------------------------

_ROLES = frozenset({"user", "assistant", "system"})
_TEXT_TYPES = frozenset({"text", "multimodal_text", "code"})


def _chatgpt_text(message: dict[str, Any], where: str) -> str | None:
    content = message.get("content")
    if not isinstance(content, dict):
        raise ImportInvalid(f"{where}: content must be an object")
    if content.get("content_type") not in _TEXT_TYPES:
        return None
    if content.get("content_type") == "code":
        return _text(content.get("text"), where, "content.text", MAX_MESSAGE_CHARS)
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise ImportInvalid(f"{where}: content.parts must be a list")
    text = "\n".join(p for p in parts if isinstance(p, str))  # images etc. are not text
    return _text(text, where, "content", MAX_MESSAGE_CHARS)


def chatgpt_rows(data: Any, index: int, user_id: str) -> tuple[Row, list[Row]]:
    where = f"conversations.json conversation {index + 1}"
    if not isinstance(data, dict) or not isinstance(data.get("mapping"), dict):
        raise ImportInvalid(f"{where}: a conversation must be an object with a mapping")
    source_id = data.get("conversation_id") or data.get("id")
    if not isinstance(source_id, str) or not source_id:
        raise ImportInvalid(f"{where}: the conversation has no id")
    _text(source_id, where, "id", MAX_SHORT_TEXT_CHARS)
    conversation_id = derived_id(user_id, "chatgpt", "conversation", source_id)
    title = _text(data.get("title"), where, "title", MAX_TITLE_CHARS)
    model = _text(data.get("default_model_slug"), where, "default_model_slug",
                  MAX_SHORT_TEXT_CHARS)
    created = _epoch(data.get("create_time"), where, "create_time") or _EPOCH
    updated = _epoch(data.get("update_time"), where, "update_time") or created
    mapping: dict[str, Any] = data["mapping"]
    kept: dict[str, Row] = {}
    parents: dict[str, str | None] = {}
    for node_id, node in mapping.items():
        if not isinstance(node, dict):
            raise ImportInvalid(f"{where}: node {node_id[:60]!r} must be an object")
        parent = node.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise ImportInvalid(f"{where}: node {node_id[:60]!r} has a parent that is not an id")
        parents[node_id] = parent
        message = node.get("message")
        if message is None:
            continue
        if not isinstance(message, dict):
            raise ImportInvalid(f"{where}: node {node_id[:60]!r} has a message that is not "
                                "an object")
        author = message.get("author")
        role = author.get("role") if isinstance(author, dict) else None
        if not isinstance(role, str):
            raise ImportInvalid(f"{where}: node {node_id[:60]!r} has no author.role")
        metadata = message.get("metadata")
        hidden = isinstance(metadata, dict) and metadata.get("is_visually_hidden_from_conversation")
        text = _chatgpt_text(message, f"{where} node {node_id[:60]!r}")
        if role not in _ROLES or hidden or not text or not text.strip():
            continue
        slug = metadata.get("model_slug") if isinstance(metadata, dict) else None
        kept[node_id] = _message_row(
            user_id, derived_id(user_id, "chatgpt", "message", source_id, node_id),
            conversation_id, role, text,
            _epoch(message.get("create_time"), where, "create_time") or created, None, 0,
            slug if isinstance(slug, str) and len(slug) <= MAX_SHORT_TEXT_CHARS else None)
    for node_id, row in kept.items():
        row["parent_message_id"] = _kept_ancestor(node_id, parents, kept)
    messages = list(kept.values())
    _branch_indexes(messages)
    return _conversation_row(user_id, conversation_id, title, model, created, updated,
                             messages), messages


def _kept_ancestor(node_id: str, parents: dict[str, str | None], kept: dict[str, Row]) -> Any:
    seen = {node_id}
    current = parents.get(node_id)
    while current is not None and current not in seen:  # a cycle ends the walk
        if current in kept:
            return kept[current]["id"]
        seen.add(current)
        current = parents.get(current)
    return None


# --- Claude ----------------------------------------------------------------------------------

_SENDERS = {"human": "user", "assistant": "assistant"}


def _claude_text(message: dict[str, Any], where: str) -> str | None:
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        return _text(text, where, "text", MAX_MESSAGE_CHARS)
    content = message.get("content")
    if isinstance(content, list):
        joined = "\n".join(p["text"] for p in content if isinstance(p, dict)
                           and p.get("type") == "text" and isinstance(p.get("text"), str))
        return _text(joined, where, "content", MAX_MESSAGE_CHARS)
    if text is not None and not isinstance(text, str):
        raise ImportInvalid(f"{where}: text must be text")
    return None


def claude_rows(data: Any, index: int, user_id: str) -> tuple[Row, list[Row]]:
    where = f"conversations.json conversation {index + 1}"
    if not isinstance(data, dict) or not isinstance(data.get("chat_messages"), list):
        raise ImportInvalid(f"{where}: a conversation must be an object with chat_messages")
    source_id = _text(data.get("uuid"), where, "uuid", MAX_SHORT_TEXT_CHARS, required=True)
    assert source_id is not None
    conversation_id = derived_id(user_id, "claude", "conversation", source_id)
    title = _text(data.get("name"), where, "name", MAX_TITLE_CHARS) or None
    created = _iso(data.get("created_at"), where, "created_at") or _EPOCH
    updated = _iso(data.get("updated_at"), where, "updated_at") or created
    messages: list[Row] = []
    by_source: dict[str, Row] = {}
    previous: Row | None = None
    for position, message in enumerate(data["chat_messages"]):
        at = f"{where} message {position + 1}"
        if not isinstance(message, dict):
            raise ImportInvalid(f"{at}: a message must be an object")
        message_id = _text(message.get("uuid"), at, "uuid", MAX_SHORT_TEXT_CHARS,
                           required=True)
        assert message_id is not None
        role = _SENDERS.get(message.get("sender"))  # type: ignore[arg-type]
        text = _claude_text(message, at)
        if role is None or not text:
            continue
        parent_source = message.get("parent_message_uuid")
        parent = by_source.get(parent_source) if isinstance(parent_source, str) else previous
        row = _message_row(user_id, derived_id(user_id, "claude", "message", source_id,
                                               message_id), conversation_id, role, text,
                           _iso(message.get("created_at"), at, "created_at") or created,
                           parent["id"] if parent else None, 0, None)
        messages.append(row)
        by_source[message_id] = row
        previous = row
    _branch_indexes(messages)
    return _conversation_row(user_id, conversation_id, title, None, created, updated,
                             messages), messages


class ChatExport:
    """Conversations and messages of a ChatGPT or Claude ``conversations.json``, read once:
    the first conversation tells which of the two it is (an empty list: nothing to import,
    called ``chatgpt``)."""

    def __init__(self, raw: IO[bytes], size: int, limits: ImportLimits, user_id: str,
                 close: Callable[[], None] = lambda: None) -> None:
        self.kind = "chatgpt"
        self._raw = raw
        self._size = size
        self._reader = bounded_items(raw, chat_limits(limits), "conversations.json",
                                     "conversation", top_level_list=True)
        self._user_id = user_id
        self._close = close

    def progress(self) -> tuple[int, int]:
        return self._reader.bytes_done, self._size

    def records(self) -> Iterator[tuple[str, Row, str]]:
        convert = None
        for index, data in enumerate(self._reader):
            if convert is None:
                self.kind = detect(data)
                convert = chatgpt_rows if self.kind == "chatgpt" else claude_rows
            where = f"conversations.json conversation {index + 1}"
            conversation, messages = convert(data, index, self._user_id)
            yield "conversations", conversation, where
            for message in messages:
                yield "messages", message, where

    def verify(self, counts: dict[str, int]) -> None:
        pass

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            self._close()
