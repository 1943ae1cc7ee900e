"""Council proposals from the expert registry (the rules and the solver: domain.matching).

Proposing is serialised by a PostgreSQL advisory lock and solved for every request that is
waiting for a council at that moment, as one batch: requests that compete for the same
experts share them by overall fit. Each proposal is stored with its explanation, and its
seats count against the experts' load until they become assignments, so a proposal made a
moment later never over-commits anyone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import queries as q
from domain.calendar import WorkingCalendar
from domain.matching import Candidate, MatchRequest, exclusion, propose_councils, seat
from domain.messages import CheckCouncilInput, ProposeCouncilInput, ReleaseSeatInput
from domain.models import CouncilCandidate, CouncilProposal, Role, fold

_MATCHING_LOCK = 0x636F756E  # "coun": one proposal batch at a time, across every worker


def _candidate(r: asyncpg.Record) -> Candidate:
    return Candidate(
        code=r["code"],
        organisation=r["organisation"],
        member_association=r["member_association"],
        expertise=dict(r["expertise"]),
        load=int(r["load"]),
        load_limit=int(r["load_limit"]),
        active=r["active"],
        conflicts=tuple(r["conflicts"]),
        unavailable=tuple(
            (date.fromisoformat(p["start"]), date.fromisoformat(p["end"])) for p in r["unavailable"]
        ),
    )


def _window(now: datetime, days: int, cal: WorkingCalendar) -> tuple[date, date]:
    start = cal.local_date(now)
    return start, cal.local_date(cal.add_working_days(now, days)) if days else start


class CouncilActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _request(
        self,
        conn: asyncpg.Connection,
        inp: ProposeCouncilInput,
        now: datetime,
        previous: set[str],
        excluding: bool = True,
    ) -> MatchRequest:
        cal = WorkingCalendar(inp.calendar.extra_days_off, inp.calendar.extra_working_days)
        requester = await q.agency_identities(conn, [inp.agency_code])
        return MatchRequest(
            request_id=inp.request_id,
            requester=requester.get(inp.agency_code, frozenset({fold(inp.agency_code)})),
            fields=tuple(inp.expertise_fields),
            council_size=inp.council_size,
            alternates=inp.alternates,
            window=_window(now, inp.review_window_days, cal),
            previous=frozenset(previous | (set(inp.exclude) if excluding else set())),
        )

    @activity.defn(name="propose_council")
    async def propose_council(self, inp: ProposeCouncilInput) -> CouncilProposal:
        now = inp.now or datetime.now(UTC)
        cal = WorkingCalendar(inp.calendar.extra_days_off, inp.calendar.extra_working_days)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MATCHING_LOCK)
            stored = await q.get_council(conn, inp.request_id)
            if stored is not None:
                # Proposed already (by this activity's earlier attempt, or in the batch of
                # another request): the same proposal, never a second one.
                return CouncilProposal.model_validate(stored["proposal"])
            peers = [
                p for p in await q.requests_awaiting_council(conn) if p["id"] != inp.request_id
            ]
            ids = [inp.request_id, *(p["id"] for p in peers)]
            previous: dict[str, set[str]] = {i: set() for i in ids}
            for r in await q.experts_on_requests(conn, ids):
                previous[r["request_id"]].add(r["expert_code"])
            batch = [await self._request(conn, inp, now, previous[inp.request_id])]
            names = await q.agency_identities(conn, [p["agency_code"] for p in peers])
            for p in peers:
                batch.append(
                    MatchRequest(
                        request_id=p["id"],
                        requester=names[p["agency_code"]],
                        fields=tuple(p["expertise_fields"]),
                        council_size=p["council_size"],
                        alternates=p["alternates"] or 0,
                        window=_window(now, p["review_window_days"] or 0, cal),
                        previous=frozenset(previous[p["id"]]),
                    )
                )
            fields = sorted({f for r in batch for f in r.fields})
            candidates = [_candidate(r) for r in await q.matching_candidates(conn, fields)]
            proposals = propose_councils(batch, candidates)
            for request_id, proposal in proposals.items():
                await q.insert_council(conn, request_id, proposal.model_dump(mode="json"), now)
        activity.logger.info(
            "council proposed", extra={"request_id": inp.request_id, "batch": len(batch)}
        )
        return proposals[inp.request_id]

    @activity.defn(name="reserve_expert")
    async def reserve_expert(self, inp: ProposeCouncilInput) -> CouncilProposal:
        """The coordinator's choice of one expert (`exclude[0]`), or an alternate, checked
        against the same hard rules as a proposal and, when admitted, given a seat on the
        request — in one transaction under the matching lock, so no one else can take that
        seat meanwhile. A refusal comes back as `shortfall`, naming the rule. A retry finds
        the seat it reserved and admits again."""
        code = inp.exclude[0]
        now = inp.now or datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MATCHING_LOCK)
            r = await q.expert_for_matching(conn, code)
            if r is None:
                return CouncilProposal(
                    members=[], alternates=[], shortfall=f"{code} is not in the expert registry"
                )
            on_request = {
                x["expert_code"] for x in await q.experts_on_requests(conn, [inp.request_id])
            }
            c = _candidate(r)
            if await q.holds_place(conn, inp.request_id, code):  # this request's own seat
                c = replace(c, load=max(0, c.load - 1))
            req = await self._request(conn, inp, now, on_request, excluding=False)
            why = exclusion(req, c)
            if why:
                return CouncilProposal(members=[], alternates=[], shortfall=f"{code}: {why}")
            await q.reserve_seat(conn, inp.request_id, code, now)
        return CouncilProposal(
            members=[seat(req, c, Role.member, "chosen by the coordinator")], alternates=[]
        )

    @activity.defn(name="release_seat")
    async def release_seat(self, inp: ReleaseSeatInput) -> None:
        """A reserved seat the request did not use after all (the swap it was for fell
        through)."""
        async with self._pool.acquire() as conn:
            await q.release_seat(conn, inp.request_id, inp.expert_code)

    @activity.defn(name="reserve_council")
    async def reserve_council(self, inp: CheckCouncilInput) -> CouncilProposal:
        """A council as the coordinator edited it: every member re-checked for conflicts,
        availability and load (a seat they already hold on this request does not count against
        them) and, when every one passes, stored as the request's council — its members hold
        their seats from that moment, those left out give theirs up. One transaction under the
        matching lock. Refused with every problem named."""
        req = inp.request
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MATCHING_LOCK)
            stored = await q.get_council(conn, req.request_id)
            on_request = {
                x["expert_code"] for x in await q.experts_on_requests(conn, [req.request_id])
            }
            proposed = {m["expert_code"] for m in (stored["proposal"]["members"] if stored else [])}
            match = await self._request(conn, req, req.now or datetime.now(UTC), on_request)
            problems, members = [], []
            for code in inp.members:
                r = await q.expert_for_matching(conn, code)
                if r is None:
                    problems.append(f"{code} is not in the expert registry")
                    continue
                c = _candidate(r)
                if await q.holds_place(conn, req.request_id, code):
                    c = replace(c, load=max(0, c.load - 1))
                why = exclusion(match, c)
                if why:
                    problems.append(f"{code}: {why}")
                    continue
                role = Role.chair if code == inp.chair else Role.member
                why = "proposed" if code in proposed else "chosen by the coordinator"
                members.append(seat(match, c, role, why))
            if problems:
                raise ApplicationError(
                    "members: " + "; ".join(problems), type="InvalidCouncil", non_retryable=True
                )
            members.sort(key=lambda m: m.role != Role.chair)
            alternates = [
                CouncilCandidate.model_validate(a)
                for a in (stored["proposal"]["alternates"] if stored else [])
                if a["expert_code"] not in inp.members
            ]
            council = CouncilProposal(
                members=members,
                alternates=alternates,
                excluded=stored["proposal"].get("excluded", []) if stored else [],
            )
            await q.set_council_members(conn, req.request_id, council.model_dump(mode="json"))
        return council
