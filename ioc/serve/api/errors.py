"""Error answers that match the OpenAPI document, so clients generated from it do not break.

Two shapes only:
- `{"detail": "<what is wrong>"}` for 401, 403, 404, 409, 429 and 503 (`Problem`);
- `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}` for every 422, ours included:
  a route that refuses a value with a sentence gets it wrapped into that list, because the
  schema FastAPI publishes for 422 says array, and a string there broke generated clients.

`document_errors` adds the answers FastAPI does not know a route can give to the schema:
401 and 403 where a token is needed, 404 where the path names a thing, 429 on the login,
503 everywhere (the database can be down).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM = {"title": "Problem", "type": "object", "required": ["detail"],
           "properties": {"detail": {"type": "string", "title": "Detail"}}}
_TEXT = {
    401: "No valid token: log in again (`POST /api/v1/auth/token`)",
    403: "The token's role may not do this",
    404: "No such thing",
    409: "Conflicts with what is stored",
    429: "Too many failed logins: wait `Retry-After` seconds",
    503: "The database is unavailable: try again shortly",
}


def as_validation_list(message: str) -> list[dict[str, Any]]:
    return [{"loc": ["body"], "msg": message, "type": "value_error"}]


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 422 and isinstance(exc.detail, str):
            return JSONResponse({"detail": as_validation_list(exc.detail)}, status_code=422, headers=exc.headers)
        return await http_exception_handler(request, exc)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            codes = [503]
            if op.get("security") or any(p.get("in") == "header" and p.get("name") == "authorization"
                                         for p in op.get("parameters", [])):
                codes += [401, 403]
            if "{" in path:
                codes.append(404)
            if method in ("post", "put") and path.startswith("/api/v1/") and "{" in path:
                codes.append(409)
            if path == "/api/v1/auth/token":
                codes += [401, 429]
            responses = op.setdefault("responses", {})
            for code in sorted(set(codes)):
                responses.setdefault(str(code), {"description": _TEXT[code], **ref})
