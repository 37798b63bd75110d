"""Search over the user's content, scoped to the user, on whichever database holds it.

- ``text``: PostgreSQL full-text search, ``websearch_to_tsquery('english', q)`` against the
  generated ``tsvector`` columns (GIN indexes) of conversation titles, messages, notes and
  memories, ranked with ``ts_rank`` (normalised to 0..1); snippets from ``ts_headline``.
- ``semantic``: the query's embedding against messages, memories and file chunks by cosine
  distance (``<=>``), each table through its HNSW index, merged by distance. Only rows whose
  ``embedding_model`` is the query's model are compared (vectors of different models live in
  different spaces); rows of another model wait for the re-embedding job
  (``byodb.services.reembed``). A version-1 database has no ``embedding_model`` column and
  is searched unfiltered (:data:`SEMANTIC_SEARCH_UNSTAMPED`).

Both run as one statement in one transaction. :data:`SEMANTIC_SEARCH` and
:data:`TUNE_VECTOR_SEARCH` are public because ``bench/search.py`` measures exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    Integer,
    Select,
    String,
    TextClause,
    Uuid,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from byodb.assistant.embeddings import EmbeddingModel, check_embedding, embed_texts, is_zero
from byodb.content import has_column
from byodb.content.limits import MAX_TITLE_CHARS
from byodb.content.tables import (
    EMBEDDING_DIMENSIONS,
    conversations,
    file_chunks,
    files,
    memories,
    messages,
    notes,
)
from byodb.errors import InvalidInput
from byodb.routing import Router

Mode = Literal["text", "semantic"]
MAX_QUERY_CHARS = 500
MAX_RESULTS = 50
SNIPPET_CHARS = 240
_EXCERPT_CHARS = SNIPPET_CHARS * 2
"""What the server sends of a hit's text; the snippet shown is cut from it."""

HNSW_EF_SEARCH = 100
"""Candidate list size of each HNSW search (pgvector's default is 40). Chosen with
``bench/search.py``: at 100,000 memories it gives recall@10 ≥ 0.95 within the latency
target; see docs/search.md for the measured figures."""

TUNE_VECTOR_SEARCH: TextClause = text(
    "select set_config('hnsw.ef_search', :ef, true), "
    "set_config('random_page_cost', '1.1', true), "
    "set_config('plan_cache_mode', 'force_custom_plan', true), "
    "case when (select string_to_array(split_part(extversion, '-', 1), '.')::int[] "
    "          >= array[0, 8] from pg_extension where extname = 'vector') "
    "     then set_config('hnsw.iterative_scan', 'relaxed_order', true) end")
"""``SET LOCAL`` for one semantic search (parameter ``ef``), each setting for a reason:

- ``hnsw.ef_search``: the HNSW candidate list, :data:`HNSW_EF_SEARCH`.
- ``random_page_cost = 1.1`` (the usual value for SSDs, which hosted PostgreSQL uses):
  with the default 4, pgvector's cost estimate makes a sequential scan look cheaper than
  the index for tables of roughly 50,000-150,000 vectors (the estimate leaves out reading
  each TOASTed 6 KB vector), and a search takes hundreds of milliseconds instead of a few.
  ``bench/search.py`` shows both.
- ``plan_cache_mode = force_custom_plan``: the planner sees the real user and ``LIMIT``,
  which pgvector uses to decide between the HNSW index and the ``user_id`` index plus an
  exact sort (the better plan for a user owning a few rows of a shared table on main).
- ``hnsw.iterative_scan = relaxed_order`` (pgvector ≥ 0.8 only; older versions lack the
  setting): when the index is used with the ``user_id`` filter, keep walking the graph
  until ``limit`` rows of this user are found instead of stopping at ``ef_search``.
"""


@dataclass(frozen=True)
class SearchHit:
    type: str  # conversation | message | note | memory | file_chunk
    id: str
    snippet: str
    score: float
    conversation_id: str | None = None
    file_id: str | None = None
    title: str | None = None

    def as_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": self.type, "id": self.id, "snippet": self.snippet,
                                "score": round(self.score, 6)}
        for key in ("conversation_id", "file_id", "title"):
            value = getattr(self, key)
            if value is not None:
                item[key] = value
        return item


def check_query(q: object) -> str:
    if not isinstance(q, str) or not q.strip():
        raise InvalidInput("the search query is empty")
    q = " ".join(q.split())
    if len(q) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the search query is longer than {MAX_QUERY_CHARS} characters")
    return q


async def search(router: Router, embedder: EmbeddingModel, user_id: str, q: str, *,
                 mode: Mode = "text", limit: int = 20) -> list[dict[str, Any]]:
    """The user's content matching ``q``, best first."""
    q = check_query(q)
    if mode not in ("text", "semantic"):
        raise InvalidInput("mode must be text or semantic")
    limit = max(1, min(limit, MAX_RESULTS))
    if mode == "text":
        hits = await _text_search(router, user_id, q, limit)
    else:
        vector = (await embed_texts(embedder, [q]))[0]
        if is_zero(vector):
            return []  # a query of symbols only: nothing to compare with
        hits = await semantic_search(router, user_id, vector, limit, model=embedder.name)
    return [hit.as_dict() for hit in hits]


# -- text -------------------------------------------------------------------------------------

def _text_branch(type_: str, table: Any, tsv: ColumnElement[Any], body: ColumnElement[Any],
                 query: ColumnElement[Any], user_id: str, *,
                 conversation_id: ColumnElement[Any] | None = None,
                 title: ColumnElement[Any] | None = None) -> Select[Any]:
    return select(
        literal(type_, String).label("type"), table.c.id.label("id"),
        (conversation_id if conversation_id is not None else null()).label("conversation_id"),
        (title if title is not None else cast(null(), String)).label("title"),
        body.label("body"),
        # Normalisation 32 maps the rank to rank/(rank+1): 0..1, comparable across tables.
        func.ts_rank(tsv, query, 32).label("score"),
    ).where(table.c.user_id == user_id, tsv.op("@@")(query))


async def _text_search(router: Router, user_id: str, q: str, limit: int) -> list[SearchHit]:
    query = func.websearch_to_tsquery("english", q)
    branches = union_all(
        _text_branch("conversation", conversations, conversations.c.title_tsv,
                     func.coalesce(conversations.c.title, ""), query, user_id,
                     conversation_id=conversations.c.id, title=conversations.c.title),
        _text_branch("message", messages, messages.c.content_tsv, messages.c.content, query,
                     user_id, conversation_id=messages.c.conversation_id),
        _text_branch("note", notes, notes.c.content_tsv, notes.c.content, query, user_id,
                     title=notes.c.title),
        _text_branch("memory", memories, memories.c.content_tsv, memories.c.content, query,
                     user_id),
    ).subquery("hits")
    top = (select(branches).order_by(branches.c.score.desc(), branches.c.id)
           .limit(limit).subquery("top"))
    # ts_headline is costly on long texts, so only the rows that made the cut get one.
    headline = func.ts_headline(
        "english", top.c.body, query,
        literal("StartSel=\"\", StopSel=\"\", MaxWords=35, MinWords=12, "
                "MaxFragments=2, FragmentDelimiter=\" … \""))
    statement = select(
        top.c.type, top.c.id, top.c.conversation_id,
        _excerpt(top.c.title, MAX_TITLE_CHARS).label("title"), top.c.score,
        _excerpt(headline, _EXCERPT_CHARS).label("snippet"),
    ).order_by(top.c.score.desc(), top.c.id)
    async with router.connect(user_id, messages) as conn:
        rows = (await conn.execute(statement)).all()
    return [SearchHit(r.type, str(r.id), _shorten(r.snippet), float(r.score),
                      conversation_id=str(r.conversation_id) if r.conversation_id else None,
                      title=r.title) for r in rows]


def _excerpt(text: ColumnElement[Any], chars: int) -> ColumnElement[Any]:
    """A hit shows excerpts, not stored values, so a text longer than the API allows (the
    owner's own edit) is cut on the server like any other — bounded, never an error."""
    return func.left(text, chars)


def _shorten(snippet: str | None) -> str:
    snippet = " ".join((snippet or "").split())
    return snippet if len(snippet) <= SNIPPET_CHARS else snippet[:SNIPPET_CHARS - 1] + "…"


# -- semantic ---------------------------------------------------------------------------------

# One bound vector, user and limit shared by all branches: the driver sends the 1536 floats
# once and the server parses them once. The statement is built once per process, so a
# search costs no statement construction or compilation.
_QUERY_VECTOR = bindparam("query_vector", type_=Vector(EMBEDDING_DIMENSIONS))
_USER = bindparam("user_id", type_=String)
_LIMIT = bindparam("limit", type_=Integer)
_MODEL = bindparam("model", type_=String)


def _nearest(type_: str, table: Any, *, by_model: bool,
             conversation_id: ColumnElement[Any] | None = None,
             file_id: ColumnElement[Any] | None = None) -> Select[Any]:
    """The ``limit`` rows of one table nearest to the query vector (of the query's model
    when ``by_model``). ``ORDER BY embedding <=> v LIMIT k`` is the shape pgvector's HNSW
    index answers."""
    distance = table.c.embedding.cosine_distance(_QUERY_VECTOR)
    conditions = [table.c.user_id == _USER, table.c.embedding.is_not(None)]
    if by_model:
        conditions.append(table.c.embedding_model == _MODEL)
    return (select(
        literal(type_, String).label("type"), table.c.id.label("id"),
        (conversation_id if conversation_id is not None else cast(null(), Uuid)
         ).label("conversation_id"),
        (file_id if file_id is not None else cast(null(), Uuid)).label("file_id"),
        _excerpt(table.c.content, _EXCERPT_CHARS).label("body"),
        distance.label("distance"),
    ).where(*conditions).order_by(distance).limit(_LIMIT))


def _semantic_statement(*, by_model: bool) -> Select[Any]:
    branches = union_all(
        _nearest("message", messages, by_model=by_model,
                 conversation_id=messages.c.conversation_id).subquery().select(),
        _nearest("memory", memories, by_model=by_model).subquery().select(),
        _nearest("file_chunk", file_chunks, by_model=by_model,
                 file_id=file_chunks.c.file_id).subquery().select(),
    ).subquery("nearest")
    top = select(branches).order_by(branches.c.distance, branches.c.id).limit(_LIMIT) \
        .subquery("top")
    return (select(top, _excerpt(files.c.filename, MAX_TITLE_CHARS).label("title"))
            .outerjoin(files, (files.c.id == top.c.file_id) & (files.c.user_id == _USER))
            .order_by(top.c.distance, top.c.id))


SEMANTIC_SEARCH: Select[Any] = _semantic_statement(by_model=True)
"""Nearest messages, memories and file chunks of one user whose vectors the query's model
made, merged by distance. Each branch takes its own top ``limit`` through its own HNSW
index; the union is then cut to ``limit``. File chunks carry their file's name as the
title. Parameters: :func:`semantic_params`."""

SEMANTIC_SEARCH_UNSTAMPED: Select[Any] = _semantic_statement(by_model=False)
""":data:`SEMANTIC_SEARCH` for a version-1 database, which records no model (the
``model`` parameter is ignored)."""


def semantic_params(user_id: str, vector: list[float], limit: int,
                    model: str) -> dict[str, Any]:
    """Parameters of :data:`SEMANTIC_SEARCH`; the vector is checked first."""
    return {"query_vector": check_embedding(vector, source="the search query"),
            "user_id": user_id, "limit": limit, "model": model}


def vector_search_params(ef_search: int = HNSW_EF_SEARCH) -> dict[str, str]:
    """Parameters of :data:`TUNE_VECTOR_SEARCH`."""
    return {"ef": str(int(ef_search))}


async def tune_vector_search(conn: AsyncConnection, ef_search: int = HNSW_EF_SEARCH) -> None:
    """``SET LOCAL`` the HNSW search parameters for the current transaction."""
    await conn.execute(TUNE_VECTOR_SEARCH, vector_search_params(ef_search))


async def semantic_search(router: Router, user_id: str, vector: list[float],
                          limit: int, *, model: str) -> list[SearchHit]:
    """The nearest rows whose vectors ``model`` made (every row on a version-1 database)."""
    params = semantic_params(user_id, vector, limit, model)
    stamped = has_column(await router.content_version(user_id), memories.name,
                         "embedding_model")
    statement = SEMANTIC_SEARCH if stamped else SEMANTIC_SEARCH_UNSTAMPED
    async with router.connect(user_id, messages) as conn:
        await tune_vector_search(conn)
        rows = (await conn.execute(statement, params)).all()
    hits = []
    for r in rows:
        score = 1.0 - float(r.distance)
        if score <= 0.0:
            continue  # orthogonal or opposite: shares nothing with the query
        hits.append(SearchHit(
            r.type, str(r.id), _shorten(r.body), score,
            conversation_id=str(r.conversation_id) if r.conversation_id else None,
            file_id=str(r.file_id) if r.file_id else None, title=r.title))
    return hits
