"""The OpenAPI 3.1 document, built from the API's own route table and the
msgspec types its endpoints encode (``wheel.api.models``): one source of
truth, no hand-written copy to drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from wheel import __version__
from wheel.api.models import Problem

_REF = "#/components/schemas/{name}"


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    where: str
    schema: dict[str, Any]
    description: str
    required: bool = True


@dataclass(frozen=True)
class Operation:
    """One method of one path, as the document describes it.

    ``responses`` maps a status to (a msgspec type or None, description);
    problems are ``Problem`` documents served as problem+json.
    """

    path: str
    method: str
    summary: str
    responses: dict[int, tuple[type | None, str]]
    operation_id: str = ""
    """Names the operation (``createTimer``): generated clients name
    their functions after it."""
    body: type | None = None
    params: tuple[Param, ...] = ()
    guarded: bool = False
    tag: str = "timers"
    description: str = ""
    headers: tuple[Param, ...] = field(default=())
    content_type: str = "application/json"


def document(operations: list[Operation], tokens: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``.

    Args:
        tokens: whether ``WHEEL_API_TOKENS`` is set (guarded operations
            then need a bearer token and list 401).
    """
    types: set[type] = {Problem}
    for op in operations:
        if op.body is not None:
            types.add(op.body)
        types |= {t for t, _ in op.responses.values() if t is not None}
    _, schemas = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template=_REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(
            op, tokens
        )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "timer-wheel",
            "version": __version__,
            "description": (
                "Durable webhook timers: POST /timer with a delay (or an "
                "instant, `at`) and a URL; when the time is up the service "
                'POSTs {"id": "<uuid>"} to the URL, or sends the timer\'s '
                "own request. Timers can be listed, rescheduled, cancelled "
                "and retried; schedules fire a timer at each occurrence of "
                "a cron expression in a time zone."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if tokens:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"}
        }
    return doc


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _operation(op: Operation, tokens: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    listed = dict(op.responses)
    if op.guarded and tokens:
        listed.setdefault(401, (Problem, "no or a wrong bearer token"))
    for status, (kind, text) in sorted(listed.items()):
        answer: dict[str, Any] = {"description": text}
        if kind is not None:
            media = (
                "application/problem+json"
                if kind is Problem
                else op.content_type
            )
            answer["content"] = {media: {"schema": _ref(kind)}}
        responses[str(status)] = answer
    item: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": op.operation_id
        or f"{op.method.lower()}{_camel(op.path)}",
        "responses": responses,
    }
    if op.description:
        item["description"] = op.description
    params = [*op.params, *op.headers]
    if params:
        item["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "description": p.description,
                "schema": p.schema,
            }
            for p in params
        ]
    if op.body is not None:
        item["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    if op.guarded and tokens:
        item["security"] = [{"bearer": []}]
    return item


def _camel(path: str) -> str:
    words = [
        w.strip("{}").replace("_", " ").replace("-", " ")
        for w in path.split("/")
        if w
    ]
    return "".join(part.title() for w in words for part in w.split())
