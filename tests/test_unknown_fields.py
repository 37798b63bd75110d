"""Every request body refuses a field it does not declare — ``user_id`` above all — with
``422 invalid_input`` naming the field, and a refused request changes nothing.

The routes are enumerated from the app (its OpenAPI document and its routes), so a new
route with a body fails here until it is listed in ``_bodies`` with a valid body.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import ValidationError

from byodb.web.api.models import RequestModel
from tests.conftest import Api

USER = "amy"
UNKNOWN_FIELDS: tuple[dict[str, Any], ...] = (
    {"user_id": "victim"},
    {"colour_scheme": "dark"},
    {"created_at": "2030-01-02T09:00:00Z"},
    {"id": "00000000-0000-4000-8000-000000000001"},
)


def _json_body_routes(api: Api) -> set[tuple[str, str]]:
    """(METHOD, path template) of every operation whose OpenAPI request body is JSON."""
    found: set[tuple[str, str]] = set()
    for path, operations in api.app.openapi()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                found.add((method.upper(), path))
    return found


def _api_body_models(api: Api) -> Iterator[tuple[str, str, Any]]:
    """(method, path, annotation) of every body parameter of every ``/api`` route
    (included routers too: ``app.routes`` alone lists them as included routers)."""
    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not (context.path or "").startswith("/api/"):
            continue
        for param in route.dependant.body_params:
            for method in sorted(context.methods or ()):
                yield method, context.path or "", param.field_info.annotation


async def test_every_api_body_model_derives_from_the_forbidding_base(api: Api) -> None:
    models = list(_api_body_models(api))
    assert len(models) > 40  # the enumeration found the routes (the factory's included)
    for method, path, annotation in models:
        assert isinstance(annotation, type) and issubclass(annotation, RequestModel), \
            (method, path, annotation)
        assert annotation.model_config.get("extra") == "forbid", (method, path)


async def test_openapi_says_no_additional_properties(api: Api) -> None:
    spec = api.app.openapi()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                schema = content["schema"]
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
                assert schema.get("additionalProperties") is False, (method, path, media)


async def _created(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, USER, json=body)
    assert response.status_code == 201, (path, response.text)
    row: dict[str, Any] = response.json()
    return row


async def _ids(api: Api) -> dict[str, str]:
    """One row of every kind a path or body of the tested routes names."""
    conversation = await _created(api, "/api/conversations", {"title": "Talk"})
    conversation_id = conversation["id"]
    reply = await _created(api, f"/api/conversations/{conversation_id}/messages",
                           {"content": "hello"})
    message_id = reply["assistant_message"]["id"]
    upload = await api.post("/api/files", USER,
                            files={"file": ("notes.txt", b"plain words", "text/plain")})
    assert upload.status_code == 201, upload.text
    presentation_id = (await _created(api, "/api/presentations", {"title": "Deck"}))["id"]
    deck = f"/api/presentations/{presentation_id}"
    participant = await _created(api, f"/api/conversations/{conversation_id}/participants",
                                 {"member_id": "m1"})
    return {
        "conversation_id": conversation_id,
        "message_id": message_id,
        "file_id": upload.json()["id"],
        "member_id": participant["member_id"],
        "tool_call_id": (await _created(api, f"/api/messages/{message_id}/tool-calls",
                                        {"tool_name": "lookup"}))["id"],
        "memory_id": (await _created(api, "/api/memories", {"content": "likes tea"}))["id"],
        "project_id": (await _created(api, "/api/projects", {"name": "Alpha"}))["id"],
        "note_id": (await _created(api, "/api/notes", {"title": "Idea"}))["id"],
        "task_id": (await _created(api, "/api/tasks", {"title": "Do"}))["id"],
        "bookmark_id": (await _created(api, "/api/bookmarks",
                                       {"message_id": message_id}))["id"],
        "snippet_id": (await _created(api, "/api/snippets",
                                      {"title": "S", "content": "x = 1"}))["id"],
        "tag_id": (await _created(api, "/api/tags", {"name": "work"}))["id"],
        "presentation_id": presentation_id,
        "slide_id": (await _created(api, f"{deck}/slides", {}))["id"],
        "outline_item_id": (await _created(api, f"{deck}/outline-items",
                                           {"title": "Intro"}))["id"],
        "presentation_session_id": (await _created(api, f"{deck}/sessions", {}))["id"],
        "design_template_id": (await _created(api, "/api/design-templates",
                                              {"name": "Plain"}))["id"],
    }


def _bodies(ids: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid body for every route that takes JSON: without the unknown field, each
    would be accepted."""
    url = "postgresql://someone:secret@db.example.org:5432/content"
    deck = "/api/presentations/{presentation_id}"
    return {
        ("PUT", "/api/byod"): {"url": url, "old_database": "keep"},
        ("POST", "/api/byod/test"): {"url": url},
        ("POST", "/api/byod/disconnect"): {"mode": "keep"},
        ("POST", "/api/conversations"): {"title": "Another"},
        ("PATCH", "/api/conversations/{conversation_id}"): {"title": "Renamed"},
        ("POST", "/api/conversations/{conversation_id}/messages"): {"content": "more"},
        ("POST", "/api/conversations/{conversation_id}/messages/stream"): {"content": "more"},
        ("POST", "/api/memories"): {"content": "likes coffee"},
        ("PATCH", "/api/memories/{memory_id}"): {"is_active": False},
        ("POST", "/api/conversations/{conversation_id}/participants"): {"member_id": "m2"},
        ("PATCH", "/api/conversations/{conversation_id}/participants/{member_id}"):
            {"role": "collaborator"},
        ("POST", "/api/messages/{message_id}/tool-calls"): {"tool_name": "search"},
        ("PATCH", "/api/messages/{message_id}/tool-calls/{tool_call_id}"):
            {"status": "complete"},
        ("POST", "/api/messages/{message_id}/sources"): {"url": "https://example.org"},
        ("POST", "/api/messages/{message_id}/attachments"):
            {"filename": "a.txt", "mime_type": "text/plain",
             "content": base64.b64encode(b"hi").decode()},
        ("POST", "/api/projects"): {"name": "Beta"},
        ("PATCH", "/api/projects/{project_id}"): {"name": "Gamma"},
        ("POST", "/api/notes"): {"title": "Another idea"},
        ("PATCH", "/api/notes/{note_id}"): {"is_pinned": True},
        ("POST", "/api/tasks"): {"title": "Again"},
        ("PATCH", "/api/tasks/{task_id}"): {"status": "done"},
        ("POST", "/api/bookmarks"): {"message_id": ids["message_id"], "note": "keep"},
        ("PATCH", "/api/bookmarks/{bookmark_id}"): {"note": "changed"},
        ("POST", "/api/snippets"): {"title": "T", "content": "y = 2"},
        ("PATCH", "/api/snippets/{snippet_id}"): {"language": "python"},
        ("POST", "/api/tags"): {"name": "home"},
        ("PATCH", "/api/tags/{tag_id}"): {"name": "office"},
        ("POST", "/api/presentations"): {"title": "Other deck"},
        ("PATCH", deck): {"status": "ready"},
        ("POST", f"{deck}/slides"): {"notes": "say hello"},
        ("PATCH", f"{deck}/slides/{{slide_id}}"): {"position": 3},
        ("POST", f"{deck}/outline-items"): {"title": "End"},
        ("PATCH", f"{deck}/outline-items/{{outline_item_id}}"): {"is_completed": True},
        ("POST", f"{deck}/sessions"): {"current_slide": 0},
        ("PATCH", f"{deck}/sessions/{{presentation_session_id}}"): {"is_active": False},
        ("POST", "/api/design-templates"): {"name": "Bold"},
        ("PATCH", "/api/design-templates/{design_template_id}"): {"is_default": True},
        ("POST", "/api/projects/{project_id}/conversations"):
            {"conversation_id": ids["conversation_id"]},
        ("POST", "/api/projects/{project_id}/notes"): {"note_id": ids["note_id"]},
        ("POST", "/api/projects/{project_id}/files"): {"file_id": ids["file_id"]},
        ("POST", "/api/conversations/{conversation_id}/tags"): {"tag_id": ids["tag_id"]},
        ("POST", "/api/notes/{note_id}/tags"): {"tag_id": ids["tag_id"]},
        ("POST", "/api/tasks/{task_id}/tags"): {"tag_id": ids["tag_id"]},
        ("POST", "/api/tts-cache"): {"hash": "h-1", "text": "hello", "voice": "alloy",
                                     "audio": "AAAA"},
        ("POST", "/api/admin/byod/migrations"): {"canary": 0, "dry_run": True},
    }


def _fingerprint(main_url: str) -> dict[str, str]:
    """A digest of every row of every table on main that has a ``user_id`` (content,
    BYOD config, migrations, …) — a refused request must leave all of them as they were,
    for the signed-in user, for ``victim`` and for anyone else."""
    with psycopg.connect(main_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "select table_name from information_schema.columns where table_schema = "
            "'byodb' and column_name = 'user_id' and table_name in (select table_name from "
            "information_schema.tables where table_schema = 'byodb' and table_type = "
            "'BASE TABLE') order by 1").fetchall()]
        digests: dict[str, str] = {}
        for table in tables:
            row = conn.execute(
                f"select count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' "
                f"order by t::text)), '') from byodb.{table} t").fetchone()
            digests[table] = row[0] if row else ""
    return digests


async def test_every_json_body_refuses_unknown_fields_and_changes_nothing(
        api: Api, main_url: str) -> None:
    ids = await _ids(api)
    bodies = _bodies(ids)
    routes = _json_body_routes(api)
    # A route with a JSON body that this test does not know is a failure: add its body.
    assert routes == set(bodies), (sorted(routes - set(bodies)), sorted(set(bodies) - routes))
    before = _fingerprint(main_url)
    assert before["conversations"].startswith("1:")  # the arrangement is there to change

    for (method, template), body in sorted(bodies.items()):
        path = template.format(**ids)
        for unknown in UNKNOWN_FIELDS:
            (name,) = unknown
            sent = {**body, **unknown}
            # Admin routes are asked as an admin (a non-admin is refused before the body).
            response = await api.client.request(
                method, path, json=sent,
                headers=api.headers(USER, admin=template.startswith("/api/admin/")))
            assert response.status_code == 422, (method, template, name, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_input", (method, template, error)
            assert error["message"].startswith(f"{name}:"), (method, template, error)

    assert _fingerprint(main_url) == before
    listed = (await api.get("/api/conversations", USER)).json()["items"]
    assert [c["id"] for c in listed] == [ids["conversation_id"]]
    assert (await api.get("/api/conversations", "victim")).json()["items"] == []
    byod = (await api.get("/api/byod", USER)).json()
    assert byod["connection_status"] == "none"


async def test_a_known_field_is_still_accepted_with_the_same_base(api: Api) -> None:
    """The base refuses only what a model does not declare."""
    created = await _created(api, "/api/conversations", {"title": "Fine"})
    changed = await api.request("PATCH", f"/api/conversations/{created['id']}", USER,
                                json={"title": "Still fine", "is_pinned": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["is_pinned"] is True


async def test_file_upload_refuses_unknown_form_fields(api: Api, main_url: str) -> None:
    before = _fingerprint(main_url)
    for field in ("user_id", "folder"):
        response = await api.post("/api/files", USER, data={field: "victim"},
                                  files={"file": ("a.txt", b"words", "text/plain")})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and error["message"].startswith(f"{field}:")
    assert _fingerprint(main_url) == before
    assert (await api.get("/api/files", USER)).json()["items"] == []
    accepted = await api.post("/api/files", USER,
                              files={"file": ("a.txt", b"words", "text/plain")})
    assert accepted.status_code == 201, accepted.text


def test_a_model_on_the_base_refuses_what_it_does_not_declare() -> None:
    class Probe(RequestModel):
        name: str

    assert Probe(name="x").name == "x"
    with pytest.raises(ValidationError) as refused:
        Probe.model_validate({"name": "x", "user_id": "victim"})
    assert [(e["type"], e["loc"]) for e in refused.value.errors()] == \
        [("extra_forbidden", ("user_id",))]
