"""A process's liveness as PostgreSQL sees it: a session advisory lock on a random id, held on
one connection for as long as the process lives. When the process dies (it exits, crashes, is
SIGKILLed) its connection closes and PostgreSQL frees the lock at once, so any other process
tells a live holder from a dead one exactly, with `pg_try_advisory_xact_lock(id)`: no
heartbeat table and no lease to wait out. A host that vanishes without closing its connections
is found by TCP keepalives, set short on this connection, within about half a minute."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import suppress

import asyncpg
import structlog

log = structlog.get_logger("liveness")

# Ids from 2**32 up: never one of the engine's fixed lock ids (db/migrate.py, the council's).
_LOWEST = 1 << 32
_KEEPALIVE = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
)


class ProcessLock:
    """`async with ProcessLock(pool) as lock:` holds `lock.id` until the block ends. Its
    connection is checked every `check_every` seconds; a lock lost with its connection (the
    database restarted) is taken again on a new one."""

    def __init__(self, pool: asyncpg.Pool, check_every: float = 10.0) -> None:
        self.pool, self.check_every = pool, check_every
        self.id = _LOWEST + secrets.randbelow((1 << 63) - _LOWEST)
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task | None = None

    async def __aenter__(self) -> ProcessLock:
        self._conn = await self._take()
        self._keeper = asyncio.create_task(self._keep())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._keeper is not None
        self._keeper.cancel()
        with suppress(asyncio.CancelledError):
            await self._keeper
        if self._conn is not None:
            with suppress(Exception):  # a connection already lost holds nothing
                await self._conn.execute("SELECT pg_advisory_unlock($1)", self.id)
            await self.pool.release(self._conn)

    async def _take(self) -> asyncpg.Connection:
        conn = await self.pool.acquire()
        try:
            await conn.execute(_KEEPALIVE)
            # Waits while an old session of ours, cut off but not yet noticed by the server,
            # still holds it: until then we count as alive anyway.
            await conn.execute("SELECT pg_advisory_lock($1)", self.id)
        except BaseException:
            await self.pool.release(conn)
            raise
        return conn

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            try:
                if self._conn is None:
                    self._conn = await self._take()
                    log.warning("process lock held again", lock_id=self.id)
                else:
                    await self._conn.execute("SELECT 1")
            except Exception as err:  # keeps trying for as long as the process lives
                log.warning("process lock lost; taking it again", lock_id=self.id, error=str(err))
                if self._conn is not None:
                    conn, self._conn = self._conn, None
                    with suppress(Exception):
                        await self.pool.release(conn)
