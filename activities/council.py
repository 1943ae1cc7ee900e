"""Proposes a council from the expert registry.

Eligible: active, shares at least one expertise field with the request, not from the
requester's own organisation, not already on this request, below their load limit. Ranked
least-loaded first (by share of their limit), then by how many fields match, then by code, so
the same registry gives the same proposal. The best-matching of the council becomes its chair.
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from db import queries as q
from domain.messages import ProposeCouncilInput
from domain.models import CouncilCandidate, CouncilProposal, Role


def _norm(s: str) -> str:
    return " ".join(s.casefold().split())


class CouncilActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="propose_council")
    async def propose_council(self, inp: ProposeCouncilInput) -> CouncilProposal:
        async with self._pool.acquire() as conn:
            rows = await q.candidate_experts(conn, inp.expertise_fields)
        requester = {_norm(inp.agency_name), _norm(inp.agency_code)}
        wanted = set(inp.expertise_fields)
        excluded: list[str] = []
        eligible: list[tuple[float, int, str, CouncilCandidate]] = []
        for r in rows:
            code = r["code"]
            if code in inp.exclude:
                excluded.append(f"{code}: already has a role on this request")
                continue
            if _norm(r["organisation"]) in requester:
                excluded.append(f"{code}: same organisation as the requester")
                continue
            load, limit = int(r["active_load"]), int(r["load_limit"])
            if load >= limit:
                excluded.append(f"{code}: at load limit ({load}/{limit})")
                continue
            matched = sorted(wanted & set(r["fields"]))
            candidate = CouncilCandidate(
                expert_code=code,
                role=Role.member,
                matched_fields=matched,
                active_load=load,
                load_limit=limit,
                reason=f"matches {', '.join(matched)}; load {load}/{limit}",
            )
            eligible.append((load / limit, -len(matched), code, candidate))
        eligible.sort(key=lambda e: e[:3])
        ranked = [e[3] for e in eligible]
        members = ranked[: inp.council_size]
        alternates = ranked[inp.council_size : inp.council_size + inp.alternates]
        if members:
            # The chair is the member with the widest match; ties go to the lighter load.
            chair = min(
                members, key=lambda c: (-len(c.matched_fields), c.active_load, c.expert_code)
            )
            chair.role = Role.chair
            members.sort(key=lambda c: c.role != Role.chair)
        shortfall = None
        if len(members) < inp.council_size:
            shortfall = (
                f"needs {inp.council_size} experts in {', '.join(sorted(wanted))}, "
                f"found {len(members)} eligible"
            )
        return CouncilProposal(
            members=members, alternates=alternates, excluded=excluded, shortfall=shortfall
        )

    @activity.defn(name="check_expert")
    async def check_expert(self, inp: ProposeCouncilInput) -> CouncilProposal:
        """The coordinator's choice of one expert (`exclude[0]`), checked against the same
        hard rules as a proposal. A refusal comes back as `shortfall`, naming the rule."""
        code = inp.exclude[0]
        async with self._pool.acquire() as conn:
            r = await q.expert_with_load(conn, code)
        problem = None
        if r is None:
            problem = f"{code} is not in the expert registry"
        elif not r["active"]:
            problem = f"{code} is not active"
        elif _norm(r["organisation"]) in {_norm(inp.agency_name), _norm(inp.agency_code)}:
            problem = f"{code} is from the requester's own organisation"
        elif int(r["active_load"]) >= int(r["load_limit"]):
            problem = f"{code} is at their load limit ({r['active_load']}/{r['load_limit']})"
        if problem:
            return CouncilProposal(members=[], alternates=[], shortfall=problem)
        matched = sorted(set(inp.expertise_fields) & set(r["fields"]))
        return CouncilProposal(
            members=[
                CouncilCandidate(
                    expert_code=code,
                    role=Role.member,
                    matched_fields=matched,
                    active_load=int(r["active_load"]),
                    load_limit=int(r["load_limit"]),
                    reason="added by the coordinator"
                    + (f"; matches {', '.join(matched)}" if matched else "; no field in common"),
                )
            ],
            alternates=[],
        )
