"""The HTTP face of the Clerk emulator: Backend API paths under /clerk/v1 (the secret key picks the
instance, as on api.clerk.com) and each instance's Frontend API JWKS under /clerk/{instance}."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.clerk_backend import ClerkAPIError, ClerkBackend, clerk_public


def _error(exc: ClerkAPIError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ClerkAPIError(
            400, "malformed_request_body", "malformed request body", "The request body is not valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise ClerkAPIError(
            400, "malformed_request_body", "malformed request body", "The request body must be a JSON object."
        )
    return body


Handler = Callable[[ClerkBackend, str, Request, dict[str, Any]], Any]


def clerk_routes(backend: ClerkBackend) -> list[Route]:
    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                header = request.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                instance = backend.authenticate(token.strip() if scheme.lower() == "bearer" else None)
                body = await _json_body(request) if request.method in ("POST", "PATCH", "PUT") else {}
                result = await run_in_threadpool(handler, backend, instance, request, body)
            except ClerkAPIError as exc:
                return _error(exc)
            return JSONResponse(result)

        return endpoint

    def query(request: Request) -> dict[str, Any]:
        """The query with Clerk's repeated keys (`email_address=a&email_address=b`) as lists."""
        params: dict[str, Any] = dict(request.query_params)
        for name in ("email_address", "user_id", "external_id"):
            params[name] = request.query_params.getlist(name)
        return params

    def list_users(b: ClerkBackend, instance: str, request: Request, _body: dict[str, Any]) -> Any:
        return b.list_users(instance, query(request))

    def count_users(b: ClerkBackend, instance: str, request: Request, _body: dict[str, Any]) -> Any:
        return b.count_users(instance, query(request))

    async def frontend_jwks(request: Request) -> Response:
        try:
            return JSONResponse(backend.jwks(request.path_params["instance"]))
        except ClerkAPIError as exc:
            return _error(exc)

    async def unknown(request: Request) -> Response:
        return _error(
            ClerkAPIError(
                404, "resource_not_found", "not found", f"{request.method} {request.url.path} is not a Clerk API path"
            )
        )

    table: list[tuple[str, str, Handler]] = [
        ("POST", "/v1/users", lambda b, i, r, body: b.create_user(i, body)),
        ("GET", "/v1/users", list_users),
        ("GET", "/v1/users/count", count_users),
        ("GET", "/v1/users/{id}", lambda b, i, r, body: clerk_public(b.get_user(i, r.path_params["id"]))),
        ("PATCH", "/v1/users/{id}", lambda b, i, r, body: b.update_user(i, r.path_params["id"], body)),
        ("DELETE", "/v1/users/{id}", lambda b, i, r, body: b.delete_user(i, r.path_params["id"])),
        ("PATCH", "/v1/users/{id}/metadata", lambda b, i, r, body: b.update_metadata(i, r.path_params["id"], body)),
        ("PUT", "/v1/users/{id}/metadata", lambda b, i, r, body: b.replace_metadata(i, r.path_params["id"], body)),
        ("GET", "/v1/jwks", lambda b, i, r, body: b.jwks(i)),
    ]
    routes = [Route(path, api(handler), methods=[method]) for method, path, handler in table]
    routes.append(Route("/{instance}/.well-known/jwks.json", frontend_jwks, methods=["GET"]))
    routes.append(Route("/{rest:path}", unknown, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]))
    return routes
