"""The asyncpg pool, with jsonb decoded to Python objects on every connection."""

from __future__ import annotations

import json

import asyncpg

from infra.settings import Settings

# asyncpg's own default: each connection keeps up to this many prepared statements.
STATEMENT_CACHE_SIZE = 100


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: json.dumps(v, ensure_ascii=False),
        decoder=json.loads,
        schema="pg_catalog",
    )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    database: str | None = None,
    statement_cache_size: int = STATEMENT_CACHE_SIZE,
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        database=database,
        statement_cache_size=statement_cache_size,
    )
    assert pool is not None
    return pool


async def open_pool(settings: Settings, *, max_size: int, url: str | None = None) -> asyncpg.Pool:
    """A process's pool as its settings say: DATABASE_URL (or `url`), and asyncpg's statement
    cache of ADVISORY_DB_STATEMENT_CACHE_SIZE (0 behind PgBouncer in transaction mode)."""
    return await create_pool(
        url or settings.resolve_database_url(),
        min_size=1,
        max_size=max_size,
        statement_cache_size=settings.db_statement_cache_size,
    )
