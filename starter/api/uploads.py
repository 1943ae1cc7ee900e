"""Files coming in: `POST /documents`, and the routes whose JSON body may come as
multipart/form-data with files (a submission, a supplement). Each file is checked and stored
as the caller's upload (starter.documents); reading them is a read of the request (routes)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile as StarletteUpload

from domain.models import request_id_for
from starter import documents, service
from starter.api.auth import Principal, bearer, principal, role
from starter.api.errors import Problem, problems

router = APIRouter()


class UploadsWithJSON(APIRoute):
    """A route whose JSON body may come instead as multipart/form-data: the body in a part
    named `json`, files in parts named `file`. The files are uploaded first, as the caller's,
    and added to the body's `documents`; the route then runs on that JSON as on any other.
    A retry of the same call names the same uploads, so its Idempotency-Key replays."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                request = await _with_uploads(request)
            return await handler(request)

        return route


MULTIPART_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["json"],
                    "properties": {
                        "json": {"type": "string", "description": "the JSON body, as text"},
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "files to upload and add to its documents",
                        },
                    },
                }
            }
        }
    }
}


async def _with_uploads(request: Request) -> Request:
    who = await role("agency")(await principal(request, await bearer(request)))
    limits = _limits(request)
    form = await request.form(max_files=limits.files + 1, max_fields=5)
    raw = form.get("json")
    if not isinstance(raw, str):
        raise _invalid("json: the body's part, as text, is required")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise _invalid(f"json: not valid JSON ({err.msg} at character {err.pos})") from err
    if not isinstance(data, dict):
        raise _invalid("json: must be a JSON object")
    files = [f for f in form.getlist("file") if isinstance(f, StarletteUpload)]
    if len(files) > limits.files:
        raise _invalid(f"file: at most {limits.files} files at once")
    request_id = request.path_params.get("request_id")
    if request_id is None:  # a submission: its id comes from the agency's reference
        request_id = request_id_for(who.subject, str(data.get("agency_reference") or ""))
    uploaded = await _store_all(request, files, who, limits, reuse_for=request_id)
    documents_given = data.get("documents") if isinstance(data.get("documents"), list) else []
    data["documents"] = [*documents_given, *({"id": d.id} for d in uploaded)]
    body = json.dumps(data, ensure_ascii=False).encode()
    headers = [
        (k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({**request.scope, "headers": headers}, receive)


DocumentId = Annotated[str, Path(pattern=r"^D-[0-9A-F]{12}$", examples=["D-0A1B2C3D4E5F"])]
Uploader = Depends(role("agency", "coordinator"))


class UploadedDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    sha256: str
    size: int
    content_type: str


def _limits(request: Request) -> documents.Limits:
    return documents.Limits.of(request.app.state.settings)


def _invalid(message: str) -> Problem:
    field, _, rule = message.partition(": ")
    return Problem(
        422, "Invalid input", message, kind="validation", errors=[{"field": field, "message": rule}]
    )


@router.post(
    "/documents",
    status_code=201,
    tags=["agency"],
    response_model=list[UploadedDocument],
    responses=problems(401, 403, 422),
)
async def upload_documents(
    request: Request,
    file: Annotated[list[UploadFile], File(description="one or more files")],
    sha256: Annotated[
        list[str] | None,
        Form(description="optional: each file's SHA-256 as your system has it, in order"),
    ] = None,
    who: Principal = Uploader,
) -> list[UploadedDocument]:
    """Upload files (multipart/form-data, each part named `file`): PDF, DOCX, XLSX, ODT, ODS,
    PNG or JPEG, judged by content. Each answer's `id` is what a submission or supplement
    names in `documents: [{"id": ...}]`. Nothing is stored when any file is refused."""
    limits = _limits(request)
    if len(file) > limits.files:
        raise _invalid(f"file: at most {limits.files} files at once")
    if sha256 is not None and len(sha256) != len(file):
        raise _invalid(f"sha256: {len(sha256)} given for {len(file)} files; give one per file")
    stored = await _store_all(request, file, who, limits, declared=sha256)
    return [UploadedDocument(**d.model_dump(exclude={"uri"})) for d in stored]


async def _store_all(
    request: Request,
    files: list[UploadFile],
    who: Principal,
    limits: documents.Limits,
    reuse_for: str | None = None,
    declared: list[str] | None = None,
) -> list[Any]:
    """Every file stored as the caller's upload, or none (422 naming the rule)."""
    total = sum(f.size or 0 for f in files)
    if total > limits.request:
        raise _invalid(
            f"file: {total / (1 << 20):.1f} MiB in all; at most {limits.request >> 20} MiB"
        )
    stored: list[Any] = []
    try:
        for i, f in enumerate(files):
            async with request.app.state.storing:
                doc = await documents.upload(
                    request.app.state.pool,
                    request.app.state.store,
                    f.file,
                    f.filename or "",
                    who.person.ref,
                    limits=limits,
                    reuse_for=reuse_for,
                    sha256=declared[i] if declared else None,
                )
            stored.append(doc)
    except service.ActionError as err:
        fresh = [d.id for d in stored]
        await documents.discard(request.app.state.pool, fresh)
        raise _invalid(str(err)) from err
    return stored
