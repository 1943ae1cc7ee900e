"""The asyncpg pool, with jsonb decoded to Python objects on every connection."""

from __future__ import annotations

import json

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: json.dumps(v, ensure_ascii=False),
        decoder=json.loads,
        schema="pg_catalog",
    )


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, database: str | None = None
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, database=database
    )
    assert pool is not None
    return pool
