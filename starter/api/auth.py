"""Bearer tokens, stored only as SHA-256 hashes, each for one role and one subject: an agency
code, an expert code, a coordinator's or operator's name."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db import queries as q
from starter.api.errors import Problem

Role = Literal["agency", "expert", "coordinator", "operator"]
ROLES: tuple[Role, ...] = ("agency", "expert", "coordinator", "operator")
bearer = HTTPBearer(auto_error=False, description="advisory tokens create --role … --subject …")


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str
    token_id: int

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    pool: asyncpg.Pool, role: str, subject: str, label: str = ""
) -> tuple[int, str]:
    """Returns the token itself, which is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    if not subject.strip() or len(subject) > 120:
        raise ValueError("subject: must be 1 to 120 characters")
    token = f"adv_{secrets.token_urlsafe(32)}"
    async with pool.acquire() as conn:
        token_id = await q.insert_token(conn, hash_token(token), role, subject.strip(), label)
    return token_id, token


UNAUTHENTICATED = {"WWW-Authenticate": 'Bearer realm="advisory"'}


async def principal(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise Problem(
            401, "Unauthenticated", "send Authorization: Bearer <token>", headers=UNAUTHENTICATED
        )
    async with request.app.state.pool.acquire() as conn:
        row = await q.token_by_hash(conn, hash_token(creds.credentials))
    if row is None:
        raise Problem(
            401, "Unauthenticated", "the token is unknown or revoked", headers=UNAUTHENTICATED
        )
    return Principal(role=row["role"], subject=row["subject"], token_id=row["id"])


def role(*allowed: Role):
    """A dependency admitting only these roles (an operator reads, and never acts)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if who.role not in allowed:
            raise Problem(403, "Forbidden", f"a {who.role} may not do this", kind="forbidden")
        return who

    return check
