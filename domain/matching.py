"""Council matching: which experts sit on which request's council. Pure: no I/O.

Hard rules exclude an expert outright, and the explanation says which: inactive, a previous
role on the same request, the requester's own organisation, a declared conflict with the
agency or its organisation, unavailable during the review window, at their load limit.

Among the eligible, councils for every request in a batch are chosen together as one
minimum-cost flow (networkx's network simplex), so requests that compete for the same
experts share them by overall fit, never first come first served:

    source ─► request (council size) ─► request×association ─► expert (1) ─► sink (free load)

The cost of seating an expert is, in strict priority: expertise fit (the expert's level in
each matched field, the request's main field counting double), then their load, then their
place in code order, so the optimum is unique and the same inputs always give the same
councils. A second member from the same member association costs two fit points: councils
spread across associations unless fit says otherwise. A seat no one can fill is a shortfall,
reported with the constraint that caused it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import networkx as nx

from domain.models import CouncilCandidate, CouncilProposal, Role, fold


@dataclass(frozen=True)
class Candidate:
    code: str
    organisation: str
    member_association: str
    expertise: dict[str, int]
    load: int
    load_limit: int
    active: bool = True
    conflicts: tuple[str, ...] = ()
    unavailable: tuple[tuple[date, date], ...] = ()


@dataclass(frozen=True)
class MatchRequest:
    request_id: str
    # Every name of the requesting agency, folded (RegisteredAgency.identities): its code,
    # official name and organisation aliases, from the registry.
    requester: frozenset[str]
    fields: tuple[str, ...]  # the main field first
    council_size: int
    alternates: int
    window: tuple[date, date]  # the review window, for unavailability
    previous: frozenset[str] = field(default_factory=frozenset)  # experts with a role already


def fit(req: MatchRequest, c: Candidate) -> int:
    return sum(
        c.expertise[f] * (2 if i == 0 else 1) for i, f in enumerate(req.fields) if f in c.expertise
    )


def exclusion(req: MatchRequest, c: Candidate) -> str | None:
    """Why this expert may not sit on this request's council; None when they may."""
    if not c.active:
        return "inactive"
    if c.code in req.previous:
        return "already has a role on this request"
    if fold(c.organisation) in req.requester:
        return "same organisation as the requester"
    declared = req.requester & {fold(x) for x in c.conflicts}
    if declared:
        return f"declared a conflict with {sorted(declared)[0]}"
    for start, end in c.unavailable:
        if start <= req.window[1] and req.window[0] <= end:
            return f"unavailable {start.isoformat()} to {end.isoformat()}, in the review window"
    if c.load >= c.load_limit:
        return f"at load limit ({c.load}/{c.load_limit})"
    return None


_REASON_LABELS = [
    ("inactive", "inactive"),
    ("already has a role", "already on this request"),
    ("same organisation", "from the requester's own organisation"),
    ("declared a conflict", "declared a conflict"),
    ("unavailable", "unavailable in the review window"),
    ("at load limit", "at their load limit"),
]


def _shortfall(req: MatchRequest, matched: int, reasons: list[str], seated: int) -> str:
    counts = Counter(
        label
        for r in reasons
        for key, label in _REASON_LABELS
        if r.partition(": ")[2].startswith(key)
    )
    parts = [f"{n} {label}" for key, label in _REASON_LABELS if (n := counts[label])]
    text = (
        f"not enough experts: needs {req.council_size} in {', '.join(req.fields)}; "
        f"{matched} match the fields"
    )
    if parts:
        text += "; excluded: " + ", ".join(parts)
    return text + f"; {seated} could be seated"


def propose_councils(
    requests: list[MatchRequest], candidates: list[Candidate]
) -> dict[str, CouncilProposal]:
    experts = sorted(candidates, key=lambda c: c.code)
    rank = {c.code: i for i, c in enumerate(experts)}
    w_load = len(experts) + 1  # one load point outweighs any code order
    w_fit = 101 * w_load  # one fit point outweighs any load (load is scored 0..100)
    spread = 2 * w_fit
    unfilled = 10**12

    def cost(req: MatchRequest, c: Candidate) -> int:
        return -fit(req, c) * w_fit + (100 * c.load // c.load_limit) * w_load + rank[c.code]

    reqs = sorted(requests, key=lambda r: r.request_id)
    eligible: dict[str, list[Candidate]] = {}
    excluded: dict[str, list[str]] = {}
    matched: dict[str, int] = {}
    g = nx.DiGraph()
    total = sum(r.council_size for r in reqs)
    g.add_node("source", demand=-total)
    g.add_node("sink", demand=total)
    for req in reqs:
        r = ("req", req.request_id)
        g.add_edge("source", r, capacity=req.council_size, weight=0)
        # A seat nobody can take drains here, at a cost no real seat comes near.
        g.add_edge(r, "sink", capacity=req.council_size, weight=unfilled)
        eligible[req.request_id], excluded[req.request_id] = [], []
        matched[req.request_id] = 0
        for c in experts:
            if not set(req.fields) & set(c.expertise):
                continue
            matched[req.request_id] += 1
            why = exclusion(req, c)
            if why:
                excluded[req.request_id].append(f"{c.code}: {why}")
                continue
            eligible[req.request_id].append(c)
            a = ("assoc", req.request_id, fold(c.member_association))
            if a not in g:
                first, more = ("first", *a[1:]), ("more", *a[1:])
                g.add_edge(r, first, capacity=1, weight=0)
                g.add_edge(r, more, capacity=req.council_size, weight=spread)
                g.add_edge(first, a, capacity=1, weight=0)
                g.add_edge(more, a, capacity=req.council_size, weight=0)
            g.add_edge(a, ("expert", c.code), capacity=1, weight=cost(req, c))
    for c in experts:
        if ("expert", c.code) in g:
            g.add_edge(("expert", c.code), "sink", capacity=c.load_limit - c.load, weight=0)

    flow = nx.network_simplex(g)[1] if reqs else {}
    seated_count: Counter[str] = Counter()
    seated: dict[str, list[Candidate]] = {}
    for req in reqs:
        chosen = []
        for c in eligible[req.request_id]:
            a = ("assoc", req.request_id, fold(c.member_association))
            if flow.get(a, {}).get(("expert", c.code), 0) > 0:
                chosen.append(c)
                seated_count[c.code] += 1
        seated[req.request_id] = chosen

    proposals: dict[str, CouncilProposal] = {}
    for req in reqs:
        chosen = sorted(seated[req.request_id], key=lambda c: cost(req, c))
        members = [seat(req, c, Role.member) for c in chosen]
        if chosen:
            main = req.fields[0]
            chair = min(
                chosen, key=lambda c: (-c.expertise.get(main, 0), -fit(req, c), c.load, c.code)
            )
            for m in members:
                if m.expert_code == chair.code:
                    m.role = Role.chair
                    m.reason = f"chair: level {chair.expertise.get(main, 0)} in {main}; " + m.reason
            members.sort(key=lambda m: m.role != Role.chair)
        chosen_codes = {c.code for c in chosen}
        rest = sorted(
            (c for c in eligible[req.request_id] if c.code not in chosen_codes),
            key=lambda c: cost(req, c),
        )
        # Alternates must still have room once this batch's councils are seated.
        room = [c for c in rest if c.load + seated_count[c.code] < c.load_limit]
        alternates = [seat(req, c, Role.member) for c in room[: req.alternates]]
        alt_codes = {a.expert_code for a in alternates}
        below = [
            f"{c.code}: eligible, ranked below the "
            + ("alternates" if c in room else "council; no load left after this batch")
            + f" (score {fit(req, c)})"
            for c in rest
            if c.code not in alt_codes
        ]
        shortfall = None
        if len(chosen) < req.council_size:
            shortfall = _shortfall(
                req, matched[req.request_id], excluded[req.request_id], len(chosen)
            )
        proposals[req.request_id] = CouncilProposal(
            members=members,
            alternates=alternates,
            excluded=excluded[req.request_id] + below,
            shortfall=shortfall,
        )
    return proposals


def seat(req: MatchRequest, c: Candidate, role: Role, why: str | None = None) -> CouncilCandidate:
    """An expert seated on a request, with the explanation the coordinator reads: the fields
    matched with their levels, or `why` (a choice the coordinator made) and the fields."""
    matched = [f for f in req.fields if f in c.expertise]
    if why is None:
        levels = ", ".join(
            f"{f} (level {c.expertise[f]}{', main field' if f == req.fields[0] else ''})"
            for f in matched
        )
        reason = f"matches {levels}; score {fit(req, c)}; load {c.load}/{c.load_limit}; "
        reason += c.member_association
    else:
        reason = (
            why
            + (f"; matches {', '.join(matched)}" if matched else "; no field in common")
            + f"; load {c.load}/{c.load_limit}"
        )
    return CouncilCandidate(
        expert_code=c.code,
        role=role,
        matched_fields=matched,
        active_load=c.load,
        load_limit=c.load_limit,
        score=fit(req, c),
        member_association=c.member_association,
        reason=reason,
    )
