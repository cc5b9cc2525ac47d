"""The OpenAPI document of the whole REST API and its Swagger UI page.

The API is served by several Lambda functions (checkout's resolver and the tax resolver), each with
its own Powertools resolver; the document merges their paths so that ``/openapi.json`` and
``/docs`` describe every route. Its one server is where the document was fetched from (the
request's scheme, host and API Gateway stage, if the stage is in the URL), so Swagger UI's
"Try it out" calls the API that served it. Every operation gets a summary (the route function's
docstring's first line, or its name in words), a schema for its success response and kassa's
``{"error": {...}}`` schema for its 4xx responses (instead of Powertools' 422, which kassa never
answers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Powertools' OpenAPI models (~90 ms of pydantic classes) and the Swagger UI are imported when a
# document is built, not when a function starts: most cold starts never serve /openapi.json
if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.openapi.models import SecurityScheme
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": {"type": "string", "examples": ["invalid_request_error"]},
                "code": {"type": "string", "examples": ["parameter_invalid"]},
                "message": {"type": "string"},
                "param": {"type": "string", "description": "the field at fault, when there is one"},
            },
        }
    },
}
OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "KassaObject",
    "required": ["object"],
    "properties": {"object": {"type": "string", "description": "the kind of object", "examples": ["price"]}},
    "additionalProperties": True,
}
LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "KassaList",
    "required": ["object", "data"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/KassaObject"}},
        "has_more": {"type": "boolean", "description": "more items after the last one (cursor pagination)"},
    },
    "additionalProperties": True,
}
_ERRORS = {
    "400": "Invalid request: the message names the field (param)",
    "401": "No valid secret key (Authorization: Bearer …)",
    "404": "No such object (resource_missing) or route (route_not_found)",
    "405": "The path exists but not with this method (the Allow header lists the methods it has)",
    "409": "Conflict with the object's state",
}


#: the success response of a report answered as JSON, or with ``format=csv`` as a CSV table
JSON_OR_CSV: dict[int, OpenAPIResponse] = {
    200: {
        "description": "The report (JSON), or with format=csv a table with a header row",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/KassaObject"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


def document_responses(media_type: str) -> dict[int, OpenAPIResponse]:
    """The success response of a route that answers a file (a PDF, an XML e-invoice), not JSON."""
    schema = {"type": "string", "format": "binary"} if media_type == "application/pdf" else {"type": "string"}
    return {
        200: {
            "description": f"The document ({media_type}), with Content-Disposition naming the file",
            "content": {media_type: {"schema": schema}},
        }
    }


def server_url(app: APIGatewayRestResolver) -> str:
    """Where the current request was sent: scheme, host and, when the URL carries it, the stage."""
    event = app.current_event
    headers = event.headers
    host = headers.get("Host") or headers.get("host") or event.request_context.domain_name or ""
    proto = (headers.get("X-Forwarded-Proto") or headers.get("x-forwarded-proto") or "https").split(",")[0].strip()
    stage = event.request_context.stage
    base = f"/{stage}" if stage and stage != "$default" and event.request_context.path.startswith(f"/{stage}/") else ""
    return f"{proto}://{host}{base}" if host else base or "/"


def summary_of(func: Any) -> str:
    """The first line of the function's docstring, else its name in words (``list_prices`` → "List prices")."""
    doc = (getattr(func, "__doc__", None) or "").strip()
    if doc:
        return doc.splitlines()[0].strip().rstrip(".:")
    return str(getattr(func, "__name__", "operation")).replace("_", " ").strip().capitalize()


def _routes(app: APIGatewayRestResolver) -> Iterable[Any]:
    return app._static_routes + app._dynamic_routes  # noqa: SLF001 - Powertools keeps them there


def openapi_document(
    apps: list[APIGatewayRestResolver],
    *,
    server: str,
    title: str,
    version: str,
    description: str,
    security_schemes: dict[str, SecurityScheme],
    security: list[dict[str, list[str]]],
) -> dict[str, Any]:
    """One OpenAPI document for the routes of every resolver (the first one's wins on a clash)."""
    from aws_lambda_powertools.event_handler.openapi.models import Server

    document: dict[str, Any] = {}
    for app in apps:
        for route in _routes(app):
            if not route.summary:
                route.summary = summary_of(route.func)
        schema = app.get_openapi_schema(
            title=title,
            version=version,
            description=description,
            servers=[Server(url=server)],
            security_schemes=security_schemes,
            security=security,
        )
        part: dict[str, Any] = json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))
        if not document:
            document = part
            continue
        for path, item in part.get("paths", {}).items():
            document.setdefault("paths", {}).setdefault(path, {})
            for method, operation in item.items():
                document["paths"][path].setdefault(method, operation)
        for name, value in part.get("components", {}).get("schemas", {}).items():
            document.setdefault("components", {}).setdefault("schemas", {}).setdefault(name, value)
    _shape_responses(document)
    return document


def _shape_responses(document: dict[str, Any]) -> None:
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update({"Error": ERROR_SCHEMA, "KassaObject": OBJECT_SCHEMA, "KassaList": LIST_SCHEMA})
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            listing = str(operation.get("operationId", "")).startswith("list_") or path.endswith("/entitlements")
            body = {"$ref": "#/components/schemas/KassaList" if listing else "#/components/schemas/KassaObject"}
            success = [code for code in responses if code.startswith("2")] or ["200"]
            for code in success:
                response = responses.setdefault(code, {"description": "Successful Response"})
                content = response.setdefault("content", {})
                if any(not media.endswith("json") for media in content):  # a file (document_responses)
                    # or a report that answers JSON or CSV: its JSON schema is given with a $ref
                    if "$ref" not in content.get("application/json", {}).get("schema", {}):
                        content.pop("application/json", None)
                    continue
                content.setdefault("application/json", {})["schema"] = body
            codes = ["400", "401"] if path.startswith("/v1/") else ["400"]
            if "{" in path or path.startswith("/v1/"):  # a path id, or an id in the body or query
                codes.append("404")
            codes.append("405")
            if method in ("post", "put", "delete"):
                codes.append("409")
            for code in codes:
                responses.setdefault(code, {"description": _ERRORS[code], "content": error})


def swagger_page(document: dict[str, Any]) -> str:
    """Swagger UI (Powertools' bundled copy, inlined) over ``document``."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    ui = Path(generate_swagger_html.__code__.co_filename).parent
    js = (ui / "swagger-ui-bundle.min.js").read_text(encoding="utf-8")
    css = (ui / "swagger-ui.min.css").read_text(encoding="utf-8")
    spec = json.dumps(document, indent=2).replace("</", "<\\/")
    return generate_swagger_html(spec, js, css, "", None, False)
