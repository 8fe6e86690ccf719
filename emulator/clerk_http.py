"""The HTTP face of the Clerk emulator: Backend API paths under /clerk/v1 (the secret key picks the
instance, as on api.clerk.com) and each instance's Frontend API JWKS under /clerk/{instance}."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
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


@cache
def described() -> dict[str, Any]:
    """Clerk's Backend API description (specs/clerk-bapi.json, built by emulator/specs/build_clerk.py)."""
    return json.loads((Path(__file__).resolve().parent / "specs" / "clerk-bapi.json").read_text(encoding="utf-8"))


def _refuse_unknown_fields(operation: dict[str, Any] | None, body: dict[str, Any]) -> None:
    """A body field the description does not list is refused as Clerk refuses it."""
    fields = (operation or {}).get("body")
    if fields is None:
        return
    for name in body:
        if name not in fields:
            raise ClerkAPIError(
                422, "form_param_unknown", "is unknown", f"{name} is not a valid parameter for this request."
            )


def _described_operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The described operation a request's path matches (`/v1/organizations/org_1` -> its template), if any."""
    for key, operation in described()["operations"].items():
        verb, _, template = key.partition(" ")
        if verb == method and re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path):
            return key, operation
    return None


def clerk_routes(backend: ClerkBackend) -> list[Route]:
    def api(method: str, path: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        operation = described()["operations"].get(f"{method} {path.replace('{id}', '{user_id}')}") or described()[
            "operations"
        ].get(f"{method} {path.replace('{id}', '{session_id}')}")

        async def endpoint(request: Request) -> Response:
            try:
                header = request.headers.get("authorization", "")
                scheme, _, token = header.partition(" ")
                instance = backend.authenticate(token.strip() if scheme.lower() == "bearer" else None)
                body = await _json_body(request) if request.method in ("POST", "PATCH", "PUT") else {}
                _refuse_unknown_fields(operation, body)
                result = await run_in_threadpool(handler, backend, instance, request, body)
            except ClerkAPIError as exc:
                return _error(exc)
            return JSONResponse(result)

        return endpoint

    listed = described()["operations"]["GET /v1/users"]["query"]

    def query(request: Request) -> dict[str, Any]:
        """The query with Clerk's repeated keys (`email_address=a&email_address=b`, every array parameter of the
        description) as lists."""
        params: dict[str, Any] = dict(request.query_params)
        for name, kind in listed.items():
            if kind == "array":
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
        found = _described_operation(request.method, request.url.path)
        if found is None:
            return _error(
                ClerkAPIError(
                    404,
                    "resource_not_found",
                    "not found",
                    f"{request.method} {request.url.path} is not a Clerk API path",
                )
            )
        # In Clerk's API, not in dream's: Clerk's error shape, with a status the description declares for it.
        statuses = found[1]["statuses"]
        status = 404 if 404 in statuses else next((s for s in statuses if 400 <= s < 500 and s != 401), 400)
        return _error(
            ClerkAPIError(
                status,
                "resource_not_found" if status == 404 else "unsupported_operation",
                "not emulated",
                f"{found[0]} is in Clerk's Backend API but dream's emulator does not serve it",
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
        (
            "POST",
            "/v1/users/{id}/verify_password",
            lambda b, i, r, body: b.verify_password(i, r.path_params["id"], body),
        ),
        *[
            (
                "POST",
                f"/v1/users/{{id}}/{verb}",
                lambda b, i, r, body, f=field, on=on: b.set_access(i, r.path_params["id"], f, on),
            )
            for verb, field, on in (
                ("ban", "banned", True),
                ("unban", "banned", False),
                ("lock", "locked", True),
                ("unlock", "locked", False),
            )
        ],
        ("POST", "/v1/sessions", lambda b, i, r, body: b.create_session(i, body)),
        ("GET", "/v1/sessions", lambda b, i, r, body: b.list_sessions(i, dict(r.query_params))),
        ("GET", "/v1/sessions/{id}", lambda b, i, r, body: b.get_session(i, r.path_params["id"])),
        ("POST", "/v1/sessions/{id}/revoke", lambda b, i, r, body: b.revoke_session(i, r.path_params["id"])),
    ]
    routes = [Route(path, api(method, path, handler), methods=[method]) for method, path, handler in table]
    routes.append(Route("/{instance}/.well-known/jwks.json", frontend_jwks, methods=["GET"]))
    routes.append(Route("/{rest:path}", unknown, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]))
    return routes
