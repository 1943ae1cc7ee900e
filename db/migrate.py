"""Applies db/migrations/NNNN_name.sql in order, each once, under an advisory lock so two
processes starting together never apply the same file twice."""

from __future__ import annotations

from pathlib import Path

import asyncpg

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x61647669  # "advi": any constant shared by every process of the engine


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS) -> list[str]:
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in sorted(directory.glob("*.sql")):
            if path.stem in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
            applied.append(path.stem)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    return applied
