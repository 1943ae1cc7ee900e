"""Bearer tokens, stored only as SHA-256 hashes, each for one role and one subject: a
registered agency's, expert's or coordinator's code, or an operator's name. Who a token signs
in is resolved from the registries on every call: a deactivated person signs in no more."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db import queries as q
from domain.text import with_article
from starter import service
from starter.access import Principal, Role
from starter.api.errors import Problem

ROLES: tuple[Role, ...] = ("agency", "expert", "coordinator", "operator")
bearer = HTTPBearer(auto_error=False, description="advisory tokens create --role … --subject …")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    pool: asyncpg.Pool, role: str, subject: str, label: str = ""
) -> tuple[int, str]:
    """Returns the token itself, which is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    subject = subject.strip()
    if not subject or len(subject) > 120:
        raise ValueError("subject: must be 1 to 120 characters")
    try:
        await service.signed_in(pool, role, subject)
    except service.ActionError as err:
        raise ValueError(f"subject: {err}") from err
    token = f"adv_{secrets.token_urlsafe(32)}"
    async with pool.acquire() as conn:
        token_id = await q.insert_token(conn, hash_token(token), role, subject, label)
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
    try:
        person = await service.signed_in(request.app.state.pool, row["role"], row["subject"])
    except service.ActionError as err:
        raise Problem(403, "Forbidden", str(err), kind="forbidden") from err
    return Principal(role=row["role"], subject=row["subject"], token_id=row["id"], person=person)


def role(*allowed: Role):
    """A dependency admitting only these roles (an operator reads, and never acts)."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if who.role not in allowed:
            raise Problem(
                403, "Forbidden", f"{with_article(who.role)} may not do this", kind="forbidden"
            )
        return who

    return check
