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
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.messages import ACTOR_RULE
from starter import access

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
# this rule (ACTOR_RULE) rather than how its actor object was malformed.


# What a body that is not a JSON document is told, whatever stopped it being read.
NOT_JSON = "must be a JSON document in UTF-8, sent as Content-Type: application/json"


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body",)]
        if loc[:1] == ["actor"]:
            if {"field": "actor", "message": ACTOR_RULE} not in out:
                out.append({"field": "actor", "message": ACTOR_RULE})
            continue
        if e.get("type") == "json_invalid":
            # FastAPI puts the character's offset where a field's name would be.
            where = e["loc"][1] if len(e.get("loc", ())) > 1 else None
            error = (e.get("ctx") or {}).get("error", "malformed")
            at = f" at character {where}" if isinstance(where, int) else ""
            out.append({"field": "body", "message": f"not valid JSON: {error}{at}"})
            continue
        if not loc and isinstance(e.get("input"), bytes | bytearray):
            # A body FastAPI did not parse: sent without a JSON content type.
            out.append({"field": "body", "message": NOT_JSON})
            continue
        out.append(
            {
                "field": ".".join(loc) or "body",
                "message": str(e.get("msg", "invalid")).removeprefix("Value error, "),
            }
        )
    return out


def _validation(errors: list[dict[str, str]]) -> Problem:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, "Invalid input", detail, kind="validation", errors=errors)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(access.NotVisible)
    async def _not_visible(request: Request, exc: access.NotVisible) -> JSONResponse:
        return problem_response(Problem(404, "Not found", str(exc), kind="not-found"), request)

    @app.exception_handler(access.AgenciesReadConclusions)
    async def _conclusions(request: Request, exc: access.AgenciesReadConclusions) -> JSONResponse:
        return problem_response(Problem(403, "Forbidden", str(exc), kind="forbidden"), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation(field_errors(list(exc.errors()))), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400: a body it could not decode (not UTF-8, nested past the
            # parser's depth). Told like any other invalid body, naming it.
            message = NOT_JSON
            if isinstance(exc.__cause__, RecursionError):
                message = "not valid JSON: nested too deeply"
            return problem_response(_validation([{"field": "body", "message": message}]), request)
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


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    message: str


def _absent_not_null(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    model_config = ConfigDict(extra="forbid", title="Problem", json_schema_extra=_absent_not_null)

    type: str
    title: str
    status: int
    # Left out when there is nothing to say, never null.
    detail: str | SkipJsonSchema[None] = None
    instance: str | SkipJsonSchema[None] = None
    errors: list[FieldError] | SkipJsonSchema[None] = None


# Problem details are declared under their own media type, which FastAPI's `responses` cannot
# give a model: the schema is referenced here and added to the document's components by
# `components()`, from the model above.
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
DESCRIPTIONS = {
    401: "No valid bearer token",
    403: "Your role may not do this, or you are inactive in your registry",
    404: "No such object (or not one of yours)",
    409: "Refused in the object's current state, or the same Idempotency-Key is still running",
    413: "Request too large",
    422: "Invalid input, each field named (a body that is not JSON too), or an "
    "Idempotency-Key reused for a different request",
    500: "The server failed; the detail names an incident to quote",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` that declare these error statuses, each answered as problem details."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        declared[code] = {
            "description": DESCRIPTIONS[code],
            "content": {MEDIA: {"schema": PROBLEM_SCHEMA}},
        }
        if code == 401:
            declared[code]["headers"] = {
                "WWW-Authenticate": {
                    "description": "The scheme to authenticate with",
                    "schema": {"type": "string"},
                }
            }
    return declared


def components() -> dict[str, Any]:
    """The schemas `problems()` refers to, for the document's components."""
    schema = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {"Problem": schema, **nested}


# Every route can answer these: the body limit applies before routing, and a failure is a 500.
EVERY_ROUTE = problems(413, 500)
