"""Council matching, pure: hard rules never broken, load never exceeded, the same inputs
give the same councils, explanations name what matched, and a council that cannot be formed
says which constraint stood in the way."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.matching import Candidate, MatchRequest, exclusion, propose_councils
from domain.models import fold, identities

FIELDS = ["moi-truong", "quy-hoach", "giao-thong", "kinh-te", "y-te", "thuy-loi"]
ORGS = [f"Tổ chức {i}" for i in range(8)] + ["Sở Giao thông Vận tải"]
ASSOCS = [f"Hội {i}" for i in range(5)]
WINDOW = (date(2027, 3, 1), date(2027, 4, 15))


@st.composite
def registries(draw, min_size=1, max_size=300):
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    experts = []
    for i in range(n):
        limit = rng.randint(1, 4)
        start = date(2027, 1, 1) + timedelta(days=rng.randint(0, 150))
        experts.append(
            Candidate(
                code=f"E-{i:03d}",
                organisation=rng.choice(ORGS),
                member_association=rng.choice(ASSOCS),
                expertise={f: rng.randint(1, 5) for f in rng.sample(FIELDS, rng.randint(1, 3))},
                load=rng.randint(0, limit),
                load_limit=limit,
                active=rng.random() > 0.1,
                conflicts=tuple(rng.sample(["SGTVT", "STNMT", *ORGS], rng.randint(0, 2))),
                unavailable=((start, start + timedelta(days=20)),) if rng.random() < 0.2 else (),
            )
        )
    return experts


@st.composite
def request_batches(draw, experts_codes=()):
    n = draw(st.integers(1, 12))
    reqs = []
    for i in range(n):
        agency = draw(
            st.sampled_from(
                [("SGTVT", "Sở Giao thông Vận tải"), ("STNMT", "Sở TNMT"), ("UBND", "Tổ chức 3")]
            )
        )
        reqs.append(
            MatchRequest(
                request_id=f"R-{i:02d}",
                requester=identities(agency[0], agency[1], []),
                fields=tuple(
                    draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
                ),
                council_size=draw(st.integers(1, 7)),
                alternates=draw(st.integers(0, 4)),
                window=WINDOW,
                previous=frozenset(
                    draw(st.lists(st.sampled_from(experts_codes or ["E-000"]), max_size=3))
                ),
            )
        )
    return reqs


def conflicted(req: MatchRequest, c: Candidate) -> bool:
    """The hard rules, written out again independently of the matcher."""
    return (
        not c.active
        or c.code in req.previous
        or fold(c.organisation) in req.requester
        or bool(req.requester & {fold(x) for x in c.conflicts})
        or any(s <= req.window[1] and req.window[0] <= e for s, e in c.unavailable)
        or c.load >= c.load_limit
    )


# Derandomized: the same examples on every run, so CI never fails on a draw it cannot repeat;
# health checks off because large registries are slow to generate by design.
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_conflicted_expert_is_ever_proposed_and_load_holds(data):
    experts = data.draw(registries(50, 300))
    reqs = data.draw(request_batches([e.code for e in experts]))
    proposals = propose_councils(reqs, experts)
    by_code = {e.code: e for e in experts}
    seats: dict[str, int] = {}
    for req in reqs:
        p = proposals[req.request_id]
        assert len(p.members) <= req.council_size
        assert (len(p.members) < req.council_size) == (p.shortfall is not None)
        codes = [m.expert_code for m in p.members + p.alternates]
        assert len(codes) == len(set(codes))
        for code in codes:
            c = by_code[code]
            assert not conflicted(req, c), (req, c)
            assert set(req.fields) & set(c.expertise)
        for m in p.members:
            seats[m.expert_code] = seats.get(m.expert_code, 0) + 1
        if p.members:
            assert sum(m.role == "chair" for m in p.members) == 1
    for code, n in seats.items():
        c = by_code[code]
        assert c.load + n <= c.load_limit, (code, c.load, n, c.load_limit)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_identical_inputs_give_identical_proposals(data):
    experts = data.draw(registries(20, 150))
    reqs = data.draw(request_batches([e.code for e in experts]))
    first = propose_councils(reqs, experts)
    shuffled_experts, shuffled_reqs = experts[:], reqs[:]
    random.Random(1).shuffle(shuffled_experts)
    random.Random(2).shuffle(shuffled_reqs)
    assert propose_councils(shuffled_reqs, shuffled_experts) == first


def expert(code, org="Viện A", assoc="Hội 1", load=0, limit=3, **expertise) -> Candidate:
    return Candidate(
        code=code,
        organisation=org,
        member_association=assoc,
        expertise={k.replace("_", "-"): v for k, v in expertise.items()},
        load=load,
        load_limit=limit,
    )


def request(rid="R-1", fields=("moi-truong",), size=3, alternates=2, **kw) -> MatchRequest:
    return MatchRequest(
        request_id=rid,
        requester=identities("SGTVT", "Sở Giao thông Vận tải", []),
        fields=fields,
        council_size=size,
        alternates=alternates,
        window=WINDOW,
        **kw,
    )


def test_explanation_names_the_matched_fields_and_every_exclusion():
    experts = [
        expert("E-1", moi_truong=5, thuy_loi=4),
        expert("E-2", moi_truong=3),
        expert("E-3", org="Sở Giao thông Vận tải", moi_truong=5),
        replace(expert("E-4", moi_truong=4), conflicts=("SGTVT",)),
        expert("E-5", load=2, limit=2, moi_truong=5),
        replace(expert("E-6", moi_truong=5), unavailable=((date(2027, 3, 10), date(2027, 3, 20)),)),
        replace(expert("E-7", moi_truong=5), active=False),
        expert("E-8", kinh_te=5),  # no field in common: not considered at all
    ]
    p = propose_councils(
        [request(fields=("moi-truong", "thuy-loi"), size=2, previous=frozenset())], experts
    )["R-1"]
    assert [m.expert_code for m in p.members] == ["E-1", "E-2"]
    chair = p.members[0]
    assert chair.role == "chair" and chair.matched_fields == ["moi-truong", "thuy-loi"]
    assert (
        "moi-truong (level 5, main field)" in chair.reason and "thuy-loi (level 4)" in chair.reason
    )
    assert "load 0/3" in chair.reason
    assert sorted(p.excluded) == sorted(
        [
            "E-3: same organisation as the requester",
            "E-4: declared a conflict with sgtvt",
            "E-5: at load limit (2/2)",
            "E-6: unavailable 2027-03-10 to 2027-03-20, in the review window",
            "E-7: inactive",
        ]
    )
    assert p.shortfall is None


def test_not_enough_experts_says_which_constraint_stood_in_the_way():
    experts = [
        expert("E-1", moi_truong=5),
        expert("E-2", org="Sở Giao thông Vận tải", moi_truong=5),
        expert("E-3", load=3, limit=3, moi_truong=4),
        expert("E-4", load=3, limit=3, moi_truong=2),
    ]
    p = propose_councils([request(size=3)], experts)["R-1"]
    assert [m.expert_code for m in p.members] == ["E-1"]
    assert p.shortfall == (
        "not enough experts: needs 3 in moi-truong; 4 match the fields; excluded: "
        "1 from the requester's own organisation, 2 at their load limit; 1 could be seated"
    )


def test_requests_competing_for_an_expert_share_by_overall_fit():
    """Greedy in request order would give E-1 to R-1 and leave R-2 with nobody; the flow
    seats both."""
    experts = [
        expert("E-1", limit=1, moi_truong=5, quy_hoach=5),
        expert("E-2", limit=1, quy_hoach=3),
    ]
    reqs = [
        request("R-1", fields=("quy-hoach",), size=1, alternates=0),
        request("R-2", fields=("moi-truong",), size=1, alternates=0),
    ]
    p = propose_councils(reqs, experts)
    assert [m.expert_code for m in p["R-1"].members] == ["E-2"]
    assert [m.expert_code for m in p["R-2"].members] == ["E-1"]
    assert p["R-1"].shortfall is None and p["R-2"].shortfall is None


def test_councils_spread_across_member_associations_and_chair_has_top_standing():
    experts = [
        expert("E-1", assoc="Hội 1", moi_truong=4, kinh_te=2),
        expert("E-2", assoc="Hội 1", moi_truong=4, kinh_te=2),
        expert("E-3", assoc="Hội 2", moi_truong=4, kinh_te=1),
        expert("E-4", assoc="Hội 1", moi_truong=5),
    ]
    p = propose_councils([request(fields=("moi-truong", "kinh-te"), size=2)], experts)["R-1"]
    codes = {m.expert_code for m in p.members}
    assert len({m.member_association for m in p.members}) == 2, codes
    # The chair: highest level in the main field among the seated.
    chair = next(m for m in p.members if m.role == "chair")
    assert (
        chair.expert_code
        == max(
            p.members,
            key=lambda m: {e.code: e for e in experts}[m.expert_code].expertise["moi-truong"],
        ).expert_code
    )


def test_an_expert_already_on_the_request_is_not_proposed_again():
    experts = [expert("E-1", moi_truong=5), expert("E-2", moi_truong=3)]
    p = propose_councils([request(size=1, previous=frozenset({"E-1"}))], experts)["R-1"]
    assert [m.expert_code for m in p.members] == ["E-2"]
    assert "E-1: already has a role on this request" in p.excluded
    assert exclusion(request(previous=frozenset({"E-1"})), experts[0]) is not None
