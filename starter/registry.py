"""The expert registry from a JSON file: each entry validated, good entries applied, and
re-seeding the same file changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
from pydantic import ValidationError

from db import queries as q
from domain.models import Expert


class RegistryFileError(RuntimeError):
    pass


def read_experts(path: Path) -> tuple[list[Expert], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RegistryFileError(f"{path}: no such file") from err
    except json.JSONDecodeError as err:
        raise RegistryFileError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
    if not isinstance(data, list):
        raise RegistryFileError(f"{path}: must hold a JSON list of experts")
    experts, problems = [], []
    for i, entry in enumerate(data, start=1):
        try:
            experts.append(Expert.model_validate(entry))
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            problems.append(f"entry {i}: {loc}: {first['msg']}")
    return experts, problems


async def seed_experts(pool: asyncpg.Pool, path: Path) -> tuple[int, int]:
    experts, problems = read_experts(path)
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        for e in experts:
            changed += await q.upsert_expert(conn, e)
    if problems:
        raise RegistryFileError(
            f"{len(experts)} entries applied ({changed} changed); skipped: " + "; ".join(problems)
        )
    return changed, len(experts)


async def list_experts(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            """
            SELECT e.code, e.organisation, e.member_association, e.fields, e.load_limit,
                e.active,
                (SELECT count(*) FROM assignments a WHERE a.expert_code = e.code
                   AND a.state IN ('invited', 'accepted')) AS load
            FROM experts e ORDER BY e.code
            """
        )
