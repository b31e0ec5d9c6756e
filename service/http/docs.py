"""The OpenAPI document and an API page made from it on the server: plain HTML with no
script and nothing fetched from elsewhere, since the portal's Content-Security-Policy
allows no third-party request."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.http.app import Spec

MESSAGE = {
    "type": "object",
    "properties": {"message": {"type": "string"}},
    "required": ["message"],
}


def _path(template: str) -> str:
    """Starlette's `{id:int}` as OpenAPI's `{id}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", template)


def openapi(routes: Sequence[Spec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        path = _path(spec.path)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", path)
        ]
        parameters += [
            {"name": name, "in": "query", "schema": {"type": "string"}} for name in spec.params
        ]
        if "/v1/cases/" in path:
            parameters.append(
                {
                    "name": "X-Withdrawal-Secret",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            )
        operation: dict[str, Any] = {
            "summary": spec.summary,
            "tags": [spec.tag],
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK"},
                "default": {
                    "description": "An error, with the problem named",
                    "content": {"application/json": {"schema": MESSAGE}},
                },
            },
        }
        if spec.role is not None:
            operation["security"] = [{"bearer": []}]
            operation["description"] = f"API key role: {spec.role}."
        if spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "description": f"JSON: {spec.body} (proto3 JSON mapping for the /v1 routes)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(path, {})[spec.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hashmatch HTTP API",
            "version": "1",
            "description": "Hashes in, match verdicts out. This service never takes media.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def docs_page(document: dict[str, Any]) -> str:
    rows = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            params = ", ".join(p["name"] for p in op["parameters"]) or "—"
            rows.append(
                "<tr>"
                f"<td><code>{html.escape(method.upper())}</code></td>"
                f"<td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td>"
                f"<td>{html.escape(op.get('description', 'no key'))}</td>"
                f"<td>{html.escape(params)}</td>"
                "</tr>"
            )
    title = html.escape(document["info"]["title"])
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>{html.escape(document['info']['description'])} "
        'The machine-readable form is <a href="/openapi.json">/openapi.json</a>.</p>'
        "<table><thead><tr><th>method</th><th>path</th><th>what</th><th>who</th>"
        "<th>parameters</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></body></html>"
    )
