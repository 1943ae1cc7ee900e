"""Every error as RFC 9457 problem details (`application/problem+json`). Validation errors
name each field; a workflow validator's refusal keeps its message; nothing else about the
server — no stack trace, no SQL — ever reaches a client."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger("api")
MEDIA = "application/problem+json"
TYPES = "https://advisory.example.vn/problems/"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.kind = kind or title.lower().replace(" ", "-")
        self.errors, self.headers = errors, headers

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": TYPES + self.kind,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = self.errors
        return body


def problem_response(p: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(p.body(instance), status_code=p.status, media_type=MEDIA, headers=p.headers)


# The actor of an action is set from the token; a body that names one, valid or not, is told
# this rule rather than how its actor object was malformed.
ACTOR_RULE = "who acts is who signed in; a request body may not name them"


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body",)]
        if loc[:1] == ["actor"]:
            if {"field": "actor", "message": ACTOR_RULE} not in out:
                out.append({"field": "actor", "message": ACTOR_RULE})
            continue
        out.append(
            {
                "field": ".".join(loc) or "body",
                "message": str(e.get("msg", "invalid")).removeprefix("Value error, "),
            }
        )
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            Problem(422, "Invalid input", detail, kind="validation", errors=errors), request
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}
        title = titles.get(exc.status_code, "HTTP error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
        return problem_response(
            Problem(exc.status_code, title, detail, headers=getattr(exc, "headers", None)), request
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The client gets an id to quote; the log gets the trace.
        incident = uuid.uuid4().hex[:12]
        log.error("unhandled error", incident=incident, path=request.url.path, exc_info=exc)
        return problem_response(
            Problem(500, "Internal error", f"the server failed; quote incident {incident}"),
            request,
        )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {MEDIA: {}}}
    for code, text in {
        401: "No valid bearer token",
        403: "Your role may not do this",
        404: "No such object (or not one of yours)",
        409: "Refused in the object's current state",
        413: "Request too large",
        422: "Invalid input: each field named",
    }.items()
}
