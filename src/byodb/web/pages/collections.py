"""The simple content pages (notes, tasks, memories): which API each uses and its form fields.

One generic page and script serve all three; this table is the only per-area difference.
The pages follow REST conventions (``GET /api/x`` → ``{"items": [...]}``, ``POST`` 201,
``PATCH /api/x/{id}``, ``DELETE`` 204) and say so plainly when an endpoint is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text | textarea | select | date
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()
    max_length: int | None = None
    help: str | None = None


@dataclass(frozen=True)
class Collection:
    slug: str
    title: str
    singular: str
    api: str
    intro: str
    empty: str
    title_field: str
    body_field: str | None
    fields: tuple[Field, ...]
    badges: tuple[str, ...] = ()
    quick_actions: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


NOTES = Collection(
    slug="notes", title="Notes", singular="note", api="/api/notes",
    intro="Markdown notes, kept wherever your content lives.",
    empty="No notes yet. Write your first one above.",
    title_field="title", body_field="content",
    fields=(
        Field("title", "Title", required=True, max_length=500),
        Field("content", "Note", kind="textarea", required=True, max_length=100_000,
              help="Markdown is fine."),
    ),
)

TASKS = Collection(
    slug="tasks", title="Tasks", singular="task", api="/api/tasks",
    intro="Things to do, with a status, a priority and a due date.",
    empty="No tasks yet. Add one above.",
    title_field="title", body_field="description",
    fields=(
        Field("title", "Task", required=True, max_length=500),
        Field("description", "Details", kind="textarea", max_length=20_000),
        Field("status", "Status", kind="select", required=True,
              options=(("todo", "To do"), ("in_progress", "In progress"), ("done", "Done"),
                       ("cancelled", "Cancelled"))),
        Field("priority", "Priority", kind="select",
              options=(("", "None"), ("low", "Low"), ("medium", "Medium"), ("high", "High"),
                       ("urgent", "Urgent"))),
        Field("due_date", "Due date", kind="date"),
    ),
    badges=("status", "priority", "due_date"),
    quick_actions=({"label": "Mark done", "changes": {"status": "done"},
                    "unless": {"status": "done"}},),
)

MEMORIES = Collection(
    slug="memories", title="Memories", singular="memory", api="/api/memories",
    intro="Facts the assistant keeps about you to personalise replies. You can add, correct "
          "or remove any of them.",
    empty="No memories yet. The assistant adds them as you chat, or add one above.",
    title_field="content", body_field=None,
    fields=(
        Field("content", "Memory", kind="textarea", required=True, max_length=10_000),
        Field("category", "Category", max_length=100,
              help="Optional, e.g. preference, project, person."),
    ),
    badges=("category", "source"),
)

COLLECTIONS: dict[str, Collection] = {c.slug: c for c in (NOTES, TASKS, MEMORIES)}
