"""The FastAPI application: one Temporal client and one PostgreSQL pool per process, made in
the lifespan (or handed in by a test), a body-size limit, problem-details errors, routes, the
API's documentation pages served from an installed package (no CDN), and the web portal's
pages (starter/portal) under /portal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.client import Client

from db.liveness import ProcessLock
from db.pool import open_pool
from infra.documents import document_store
from infra.settings import Settings, get_settings
from starter import portal
from starter.api import errors, routes

MAX_BODY = 1 << 20  # 1 MiB: a JSON body


class BodyLimit:
    """Refuses a body over its limit with 413, whether announced (Content-Length) or
    streamed: MAX_BODY for JSON, `uploads` for multipart uploads (a request's documents and
    the form around them)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY, uploads: int = MAX_BODY) -> None:
        self.app, self.json_limit, self.uploads = app, limit, uploads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.uploads if multipart else self.json_limit
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(send, limit)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Raised while the app reads the body: answered as 413 problem details.
                    raise HTTPException(413, f"the body may be at most {limit} bytes")
            return message

        await self.app(scope, counted, send)


async def _too_large(send: Send, limit: int) -> None:
    body = errors.Problem(413, "Request too large", f"the body may be at most {limit} bytes")
    import json

    data = json.dumps(body.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", errors.MEDIA.encode()),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    pool: asyncpg.Pool | None = None,
    task_queue: str | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_pool = None
        if client is None:
            from infra.temporal import connect

            app.state.client = await connect(settings)
        else:
            app.state.client = client
        lock_pool = None
        if pool is None:
            owned_pool = await open_pool(settings, max_size=settings.api_db_connections)
            app.state.pool = owned_pool
        else:
            app.state.pool = pool
        app.state.settings = settings
        app.state.store = document_store(settings, app.state.pool)
        # Storing an upload holds a connection for the whole file: at most half the pool
        # stores at once, so reads and actions never wait behind a burst of uploads.
        app.state.storing = asyncio.Semaphore(max(1, settings.api_db_connections // 2))
        app.state.policy = settings.load_policy()
        app.state.task_queue = task_queue or settings.task_queue
        try:
            # The liveness lock is a session's: behind a pooler in transaction mode it is
            # held on a connection of its own, straight to PostgreSQL.
            if settings.database_session_url:
                lock_pool = await open_pool(settings, max_size=1, url=settings.database_session_url)
            # Idempotency-Key claims name this process by its lock; while the lock is held,
            # other processes count its claims as running (routes.act).
            async with ProcessLock(lock_pool or app.state.pool) as lock:
                app.state.process_lock = lock.id
                yield
        finally:
            if lock_pool is not None:
                await lock_pool.close()
            if owned_pool is not None:
                await owned_pool.close()

    app = FastAPI(
        title="Advisory & Review Engine",
        version="1",
        description=(
            "Requests for advisory, critique and social assessment, from intake to the "
            "agency's answer on adoption. Authenticate with `Authorization: Bearer <token>` "
            "(`advisory tokens create`). Every action accepts an `Idempotency-Key`; errors "
            "are RFC 9457 problem details."
        ),
        lifespan=lifespan,
        responses=errors.EVERY_ROUTE,
        # Served below from the installed package instead of FastAPI's CDN links.
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(routes.router)
    # The web portal's pages (/portal), over the same pool, client and service layer.
    portal.install(app, settings)
    # The form's own fields and boundaries ride on top of the documents' limit.
    app.add_middleware(BodyLimit, uploads=(settings.document_max_request_mib << 20) + MAX_BODY)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    docs(app)
    return app


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the problem-details schema its error responses refer to."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(errors.components())
        app.openapi_schema = document
    return app.openapi_schema


# Swagger UI and ReDoc as files of an installed package (PyPI `fastapi-offline`, which
# follows their releases): /docs works on a network without internet.
ASSETS = "/docs/assets"


def docs(app: FastAPI) -> None:
    app.mount(
        ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} – API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            oauth2_redirect_url=None,
            # validatorUrl: Swagger UI would otherwise send the document to an online
            # validator; persistAuthorization keeps the bearer token across reloads.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} – API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
