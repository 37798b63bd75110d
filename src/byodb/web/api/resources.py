"""One router factory for every content area: a :class:`Resource` becomes REST routes and a
:class:`Link` becomes link routes, with request models generated from the same field rules
the services enforce, so OpenAPI documents exactly the limits that apply.

Routes of a resource at ``path`` (an owner parameter in ``path`` names a child's parent):

- ``POST path`` → 201 with the row; ``GET path`` → ``{"items": [...]}`` with the spec's
  filters, ``limit`` and ``offset``;
- ``GET / PATCH / DELETE path/{<label>_id}`` → the row / the changed row / 204.

This module deliberately has no ``from __future__ import annotations``: parameter types
are objects built at runtime (generated models, path aliases) and FastAPI must see them.
"""

import inspect
import math
from collections.abc import Callable, Collection
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, JsonValue, create_model

from byodb.content.limits import MAX_LIST_LIMIT, MAX_LIST_OFFSET
from byodb.services import links as link_service
from byodb.services import resources as resource_service
from byodb.services.links import Link
from byodb.services.resources import FieldRule, Resource, field_rule
from byodb.web.api.models import RequestModel
from byodb.web.deps import PrincipalDep, RuntimeDep

OPERATIONS = frozenset({"create", "list", "get", "update", "delete"})


def _camel(label: str) -> str:
    return "".join(part.title() for part in label.split("_"))


def _python_type(rule: FieldRule) -> tuple[Any, dict[str, Any]]:
    """The pydantic type and ``Field`` constraints of one field."""
    if rule.choices is not None:
        return Literal[rule.choices], {}  # type: ignore[valid-type]
    if rule.kind == "text":
        return str, {"max_length": rule.max_length,
                     **({"min_length": 1} if rule.required else {})}
    if rule.kind == "bytes":
        # base64 text: 4 characters per 3 bytes.
        assert rule.max_length is not None
        return str, {"max_length": 4 * math.ceil(rule.max_length / 3),
                     "description": f"base64, at most {rule.max_length} bytes decoded"}
    if rule.kind == "int":
        return int, {"ge": rule.minimum, "le": rule.maximum}
    if rule.kind == "json":
        return JsonValue, {"description": f"JSON, at most {rule.max_length} bytes"}
    if rule.kind == "number":
        return float, {"ge": rule.minimum, "le": rule.maximum, "allow_inf_nan": False}
    types: dict[str, Any] = {"bool": bool, "datetime": AwareDatetime, "uuid": UUID}
    return types[rule.kind], {}


def _model(name: str, fields: dict[str, tuple[Any, Any]]) -> type[RequestModel]:
    """A generated request model; like every request model it refuses unknown fields."""
    model: type[RequestModel] = create_model(name, __base__=RequestModel, **fields)  # type: ignore[call-overload]
    return model


def create_model_for(res: Resource) -> type[BaseModel]:
    fields: dict[str, tuple[Any, Any]] = {}
    for name in res.create:
        rule = field_rule(res, name)
        type_, constraints = _python_type(rule)
        if rule.required:
            fields[name] = (type_, Field(..., **constraints))
        elif rule.nullable:
            fields[name] = (type_ | None, Field(rule.default, **constraints))
        else:  # optional but never null: the spec or the database fills it in
            fields[name] = (type_, Field(rule.default, **constraints))
    return _model(f"{_camel(res.label)}Create", fields)


def update_model_for(res: Resource) -> type[BaseModel]:
    fields: dict[str, tuple[Any, Any]] = {}
    for name in res.update:
        rule = field_rule(res, name)
        type_, constraints = _python_type(rule)
        # Absent means "unchanged"; an explicit null is accepted only where null is a value.
        fields[name] = (type_ | None if rule.nullable else type_, Field(None, **constraints))
    return _model(f"{_camel(res.label)}Update", fields)


def filter_model_for(res: Resource) -> type[BaseModel]:
    fields: dict[str, tuple[Any, Any]] = {}
    for query_name, column in res.filters.items():
        type_, constraints = _python_type(field_rule(res, column))
        constraints.pop("min_length", None)
        fields[query_name] = (type_ | None, Field(res.filter_defaults.get(query_name),
                                                  **constraints))
    fields["limit"] = (int, Field(50, ge=1, le=MAX_LIST_LIMIT))
    fields["offset"] = (int, Field(0, ge=0, le=MAX_LIST_OFFSET))
    return _model(f"{_camel(res.label)}Filters", fields)


def _with_parameters(endpoint: Callable[..., Any], **parameters: Any) -> Callable[..., Any]:
    """A route function showing FastAPI only ``parameters`` (name → annotation) of
    ``endpoint``; the others keep their defaults. This is how one endpoint body serves
    resources with and without an owner in the URL, and with generated request models.
    Each call makes a new function, so one body may back several routes."""
    signature = inspect.signature(endpoint)
    kept = [p.replace(annotation=parameters[p.name]) for p in signature.parameters.values()
            if p.name in parameters]

    async def route(**values: Any) -> Any:
        return await endpoint(**values)

    route.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    route.__name__ = endpoint.__name__
    route.__doc__ = endpoint.__doc__
    return route


def _path_id(name: str) -> Any:
    return Annotated[UUID, Path(alias=name)]


def resource_router(res: Resource, path: str, *, tag: str,
                    operations: Collection[str] = OPERATIONS) -> APIRouter:
    """Routes for ``res`` under ``path`` (which holds ``{<owner column>}`` for a child)."""
    router = APIRouter(prefix=path, tags=[tag])
    common: dict[str, Any] = {"rt": RuntimeDep, "me": PrincipalDep}
    if res.owner is not None:
        common["owner_id"] = _path_id(res.owner.column)
    key_name = res.key if res.key != "id" else f"{res.label}_id"
    key_type: Any = UUID if res.key == "id" else str
    common_key = {**common, "key": Annotated[key_type, Path(alias=key_name,
                                                            **_key_limits(res))]}
    item = f"/{{{key_name}}}"
    human = res.human

    async def create(rt: Any, me: Any, body: BaseModel, owner_id: UUID | None = None
                     ) -> dict[str, Any]:
        return await resource_service.create_row(
            rt.router, me.user_id, res, body.model_dump(exclude_unset=True), owner_id=owner_id,
            embedder=rt.embedder)

    async def list_(rt: Any, me: Any, query: BaseModel, owner_id: UUID | None = None
                    ) -> dict[str, Any]:
        filters = query.model_dump()
        limit, offset = filters.pop("limit"), filters.pop("offset")
        items = await resource_service.list_rows(rt.router, me.user_id, res,
                                                 owner_id=owner_id, filters=filters,
                                                 limit=limit, offset=offset)
        return {"items": items}

    async def get(rt: Any, me: Any, key: Any, owner_id: UUID | None = None) -> dict[str, Any]:
        return await resource_service.get_row(rt.router, me.user_id, res, key,
                                              owner_id=owner_id)

    async def update(rt: Any, me: Any, key: Any, body: BaseModel,
                     owner_id: UUID | None = None) -> dict[str, Any]:
        return await resource_service.update_row(
            rt.router, me.user_id, res, key, body.model_dump(exclude_unset=True),
            owner_id=owner_id, embedder=rt.embedder)

    async def delete(rt: Any, me: Any, key: Any, owner_id: UUID | None = None) -> Response:
        await resource_service.delete_row(rt.router, me.user_id, res, key, owner_id=owner_id)
        return Response(status_code=204)

    if "create" in operations and res.create:
        router.add_api_route(
            "", _with_parameters(create, **common, body=create_model_for(res)),
            methods=["POST"], status_code=201, name=f"create_{res.label}",
            summary=f"Create a {human}", description=res.doc)
    if "list" in operations:
        router.add_api_route(
            "", _with_parameters(list_, **common,
                                 query=Annotated[filter_model_for(res), Query()]),
            methods=["GET"], name=f"list_{res.plural or res.label + 's'}",
            summary=f"List {res.humans}",
            description=res.doc)
    if "get" in operations:
        router.add_api_route(item, _with_parameters(get, **common_key), methods=["GET"],
                             name=f"get_{res.label}", summary=f"Get a {human}")
    if "update" in operations and res.update:
        router.add_api_route(
            item, _with_parameters(update, **common_key, body=update_model_for(res)),
            methods=["PATCH"], name=f"update_{res.label}", summary=f"Change a {human}")
    if "delete" in operations:
        router.add_api_route(item, _with_parameters(delete, **common_key),
                             methods=["DELETE"], status_code=204,
                             name=f"delete_{res.label}", summary=f"Delete a {human}",
                             response_class=Response)
    return router


def _key_limits(res: Resource) -> dict[str, Any]:
    if res.key == "id":
        return {}
    return {"min_length": 1, "max_length": field_rule(res, res.key).max_length}


def link_router(link: Link, *, left_path: str, right_segment: str, tag: str,
                reverse: tuple[str, str] | None = None) -> APIRouter:
    """``GET/POST left_path/{left_id}/right_segment`` and ``DELETE …/{right_id}``; with
    ``reverse=(right_path, left_segment)`` also ``GET right_path/{right_id}/left_segment``."""
    router = APIRouter(tags=[tag])
    left, right = link.left, link.right
    collection = f"{left_path}/{{{left.column}}}/{right_segment}"
    paging: dict[str, Any] = {
        "limit": Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)],
        "offset": Annotated[int, Query(ge=0, le=MAX_LIST_OFFSET)],
    }
    common: dict[str, Any] = {"rt": RuntimeDep, "me": PrincipalDep,
                              "left_id": _path_id(left.column)}
    body_model = _model(f"{_camel(left.label)}{_camel(right.label)}Link",
                        {right.column: (UUID, Field(...))})

    async def list_linked(rt: Any, me: Any, left_id: UUID | None = None,
                          right_id: UUID | None = None, limit: int = 50,
                          offset: int = 0) -> dict[str, Any]:
        from_left = left_id is not None
        items = await link_service.list_linked(
            rt.router, me.user_id, link, left_id if from_left else right_id,
            from_left=from_left, limit=limit, offset=offset)
        return {"items": items}

    async def add(rt: Any, me: Any, left_id: UUID, body: BaseModel) -> dict[str, Any]:
        return await link_service.link_rows(rt.router, me.user_id, link, left_id,
                                            getattr(body, right.column))

    async def remove(rt: Any, me: Any, left_id: UUID, right_id: UUID) -> Response:
        await link_service.unlink_rows(rt.router, me.user_id, link, left_id, right_id)
        return Response(status_code=204)

    one, other = left.label, right.label
    router.add_api_route(collection, _with_parameters(list_linked, **common, **paging),
                         methods=["GET"], name=f"list_{other}s_of_{one}",
                         summary=f"List the {other}s of a {one}")
    router.add_api_route(collection, _with_parameters(add, **common, body=body_model),
                         methods=["POST"], status_code=201, name=f"link_{other}_to_{one}",
                         summary=f"Add a {other} to a {one}")
    router.add_api_route(f"{collection}/{{{right.column}}}",
                         _with_parameters(remove, **common, right_id=_path_id(right.column)),
                         methods=["DELETE"], status_code=204, response_class=Response,
                         name=f"unlink_{other}_from_{one}",
                         summary=f"Remove a {other} from a {one}")
    if reverse is not None:
        right_path, left_segment = reverse
        router.add_api_route(
            f"{right_path}/{{{right.column}}}/{left_segment}",
            _with_parameters(list_linked, rt=RuntimeDep, me=PrincipalDep,
                             right_id=_path_id(right.column), **paging),
            methods=["GET"], name=f"list_{one}s_of_{other}",
            summary=f"List the {one}s of a {other}")
    return router
