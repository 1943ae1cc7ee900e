"""The portal's queries (db/migrations/0011_portal.sql): who an e-mail address signs in as,
sessions, used links and the sign-in rate limits. One function per query; each takes a
connection so the caller owns the transaction. Every instant is PostgreSQL's `now()`, so API
processes on several hosts agree on what has expired."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def identities_by_email(conn: Conn, email: str) -> list[asyncpg.Record]:
    """Every active registry entry an address belongs to (role, code, name, language):
    operators first, then coordinators, experts, and agencies whose contacts list it.
    Compared without case; `email` is given in lower case."""
    return await conn.fetch(
        """
        SELECT DISTINCT ON (rank, code) role, code, name, language FROM (
            SELECT 0 AS rank, 'operator' AS role, code, name, language
                FROM operators WHERE lower(email) = $1 AND active
            UNION ALL
            SELECT 1, 'coordinator' AS role, code, name, language
                FROM coordinators WHERE lower(email) = $1 AND active
            UNION ALL
            SELECT 2, 'expert', code, name, coalesce(languages[1], 'vi')
                FROM experts WHERE lower(email) = $1 AND active
            UNION ALL
            SELECT 3, 'agency', a.code, a.name, coalesce(c->>'language', a.language)
                FROM agencies a, jsonb_array_elements(a.contacts) c
                WHERE lower(c->>'email') = $1 AND a.active
        ) found
        ORDER BY rank, code
        """,
        email,
    )


async def lock_sign_in_counts(conn: Conn, email: str, client: str) -> None:
    """Serialises sign-in requests for one address and one client until the transaction
    ends, so two requests at once cannot both pass a limit they reach together. Always the
    address first, then the client: every transaction takes them in the same order."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('portal-sign-in-email:' || $1, 0))", email
    )
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('portal-sign-in-client:' || $1, 0))", client
    )


async def sign_in_requests_since(
    conn: Conn, email: str, client: str, window: timedelta
) -> tuple[int, int]:
    """How many sign-in requests were handled within `window`: for the address, and from
    the client."""
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE email = $1) AS by_email,
               count(*) FILTER (WHERE client = $2) AS by_client
        FROM portal_sign_in_requests
        WHERE requested_at > now() - $3::interval AND (email = $1 OR client = $2)
        """,
        email,
        client,
        window,
    )
    return row["by_email"], row["by_client"]


async def insert_sign_in_request(conn: Conn, email: str, client: str) -> None:
    await conn.execute(
        "INSERT INTO portal_sign_in_requests (email, client) VALUES ($1, $2)", email, client
    )


async def purge_portal(conn: Conn, window: timedelta) -> None:
    """Forgets what can no longer matter: sign-in requests older than the limits' window,
    used links past their own expiry (they are refused as expired anyway), sessions a day
    after they ended."""
    await conn.execute(
        "DELETE FROM portal_sign_in_requests WHERE requested_at < now() - $1::interval", window
    )
    await conn.execute("DELETE FROM portal_used_links WHERE expires_at < now()")
    await conn.execute(
        "DELETE FROM portal_sessions WHERE expires_at < now() - interval '1 day'"
        " OR revoked_at < now() - interval '1 day'"
    )


async def link_used(conn: Conn, digest: str) -> bool:
    return await conn.fetchval("SELECT true FROM portal_used_links WHERE digest = $1", digest)


async def use_link(conn: Conn, digest: str, expires_at: datetime) -> bool:
    """Marks a link used; False if it already was (by this process or any other)."""
    inserted = await conn.fetchval(
        "INSERT INTO portal_used_links (digest, expires_at) VALUES ($1, $2)"
        " ON CONFLICT (digest) DO NOTHING RETURNING true",
        digest,
        expires_at,
    )
    return bool(inserted)


async def insert_session(
    conn: Conn,
    id_hash: str,
    role: str,
    code: str,
    email: str,
    language: str,
    lifetime: timedelta,
) -> None:
    await conn.execute(
        "INSERT INTO portal_sessions (id_hash, role, code, email, language, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, now() + $6::interval)",
        id_hash,
        role,
        code,
        email,
        language,
        lifetime,
    )


async def touch_session(conn: Conn, id_hash: str, idle: timedelta) -> asyncpg.Record | None:
    """The live session with this hash, its inactivity clock restarted; None when it is
    unknown, revoked, idle for longer than `idle`, or past its absolute expiry."""
    return await conn.fetchrow(
        """
        UPDATE portal_sessions SET last_seen_at = now()
        WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now()
              AND last_seen_at > now() - $2::interval
        RETURNING role, code, email, language
        """,
        id_hash,
        idle,
    )


async def revoke_session(conn: Conn, id_hash: str) -> None:
    await conn.execute(
        "UPDATE portal_sessions SET revoked_at = now() WHERE id_hash = $1 AND revoked_at IS NULL",
        id_hash,
    )


async def revoke_sessions(conn: Conn, role: str, code: str) -> int:
    """Ends every session of one person (a lost device, a person leaving); how many."""
    status = await conn.execute(
        "UPDATE portal_sessions SET revoked_at = now()"
        " WHERE role = $1 AND code = $2 AND revoked_at IS NULL",
        role,
        code,
    )
    return int(status.split()[-1])
