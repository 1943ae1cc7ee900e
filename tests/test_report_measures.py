"""The report's measures on hand-built audit trails: no server, no database.

The trails use the action names, stages and details the workflows record. Expected numbers
are worked out by hand from a printed 2026 calendar and written as literals (Tết: Saturday 14
to Sunday 22 February; Hùng Kings: Monday 27 April, observed; 30 April and 1 May, Thursday and
Friday), so a wrong calendar or a wrong rule fails here rather than agreeing with itself.

Every kind gets the same days here (screening 5, supplement 10, respond 3, review 15,
synthesis 5, approval 3, adoption 30 working days), whatever config/policy.toml says, so each
deadline below can be checked by counting on the calendar.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain.policy import CalendarPolicy
from domain.reports import (
    AuditEvent,
    Report,
    ReportFilter,
    ReportInputError,
    RequestFacts,
    build_report,
    parse_period,
    percentile,
)
from infra.settings import CONFIG, load_policy

ICT = timezone(timedelta(hours=7))

DAYS = dict(
    screening_days=5,
    supplement_days=10,
    respond_days=3,
    review_days=15,
    synthesis_days=5,
    approval_days=3,
    adoption_days=30,
    calendar="working",
)
_BASE = load_policy(CONFIG / "policy.toml")
POLICY = _BASE.model_copy(
    update={
        "calendar": CalendarPolicy(),
        "kinds": {k: kp.model_copy(update=DAYS) for k, kp in _BASE.kinds.items()},
    }
)
COORDINATOR = "coordinator:VP01"


def at(m: int, d: int, hh: int = 9, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, m, d, hh, mm, ss, tzinfo=ICT)


def end_of(m: int, d: int) -> str:
    """A deadline as the audit details carry it."""
    return at(m, d, 23, 59, 59).isoformat()


AS_OF = at(7, 31, 12)


class Trail:
    """One request's audit events, written in the order the log has them."""

    def __init__(self, rid: str, agency: str, kind: str, fields: list[str], submitted: datetime):
        self.facts = RequestFacts(
            id=rid, agency_code=agency, kind=kind, expertise_fields=fields, submitted_at=submitted
        )
        self.events: list[AuditEvent] = []
        self.stage(
            submitted,
            "submitted",
            "screening",
            actor=f"agency:{agency}",
            agency_reference=f"{rid}/KH",
            kind=kind,
        )

    def stage(self, when: datetime, action: str, stage: str, /, actor: str = "system", **details):
        self.events.append(
            AuditEvent(
                request_id=self.facts.id,
                at=when,
                actor=actor,
                action=action,
                stage=stage,
                details=details,
            )
        )
        return self

    def expert(self, when: datetime, action: str, code: str, /, role: str = "member", **details):
        by_expert = action in ("invitation_accepted", "invitation_declined", "opinion_submitted")
        actor = f"expert:{code}" if by_expert else details.pop("actor", "system")
        self.events.append(
            AuditEvent(
                request_id=self.facts.id,
                at=when,
                actor=actor,
                action=action,
                stage=None,
                details={"expert_code": code, "role": role, **details},
            )
        )
        return self


def request_a() -> Trail:
    """Advisory, from STNMT, across Tết: a declined invitation and its alternate, a late
    opinion, an extension for the council and one for an expert, a returned draft, a late
    approval, adopted. Intake Monday 9 February, delivered Thursday 2 April."""
    t = Trail("R-A", "STNMT", "advisory", ["environment", "land"], at(2, 9))
    # Screening due end of Mon 23 Feb (10, 11, 12, 13, then Tết, 23).
    t.stage(at(2, 11, 10), "screening_accepted", "council", actor=COORDINATOR, note="")
    t.stage(at(2, 11, 10, 1), "council_proposed", "council", members=["E01", "E02", "E03"])
    # Respond-by end of Mon 23 Feb (12, 13, 23).
    t.expert(at(2, 11, 10, 2), "expert_invited", "E01", role="chair")
    t.expert(at(2, 11, 10, 2), "expert_invited", "E02")
    t.expert(at(2, 11, 10, 2), "expert_invited", "E03")
    # The council's review deadline: 18 working days, end of Mon 16 March.
    t.stage(at(2, 11, 10, 3), "review_opened", "review")
    t.expert(at(2, 12, 8, 30), "invitation_accepted", "E01", role="chair")  # due Thu 12 Mar
    t.expert(at(2, 13, 14), "invitation_declined", "E02", reason="travelling")
    t.expert(at(2, 13, 14, 1), "expert_invited", "E04")  # respond-by Wed 25 Feb
    t.expert(at(2, 23, 16), "invitation_accepted", "E03")  # on its day; due Mon 16 Mar
    t.expert(at(2, 24, 9), "invitation_accepted", "E04")  # due Tue 17 Mar
    t.expert(at(3, 10, 8), "reminder_sent", "E03", deadline="review", when="before", days=3)
    t.expert(at(3, 10, 15), "opinion_submitted", "E01", role="chair", recommendation="endorse")
    t.stage(
        at(3, 13, 11),
        "deadline_extended",
        "review",
        actor=COORDINATOR,
        deadline="review",
        reason="a late opinion",
        **{"from": end_of(3, 16), "to": end_of(3, 23)},
    )
    t.expert(
        at(3, 16, 10),
        "deadline_extended",
        "E04",
        actor=COORDINATOR,
        deadline="review",
        reason="site visit",
        **{"from": end_of(3, 17), "to": end_of(3, 24)},
    )
    t.expert(at(3, 18, 9), "opinion_submitted", "E03", recommendation="endorse_with_changes")
    t.expert(at(3, 20, 10), "opinion_submitted", "E04", recommendation="endorse")
    t.stage(at(3, 20, 10, 1), "synthesis_opened", "synthesis", chair="E01", opinions=3)
    # Synthesis due Fri 27 Mar; approval 3 days after each draft; synthesis again after a return.
    t.stage(at(3, 24, 10), "conclusion_drafted", "approval", actor="expert:E01", version=1)
    t.stage(at(3, 25, 10), "conclusion_returned", "synthesis", actor=COORDINATOR, version=1)
    t.stage(at(3, 26, 10), "conclusion_drafted", "approval", actor="expert:E01", version=2)
    # Approval was due end of Tue 31 March.
    t.stage(at(4, 2, 10), "conclusion_approved", "delivered", actor=COORDINATOR, version=2)
    # The answer is due 30 working days on: end of Tue 19 May (27/4, 30/4 and 1/5 are off).
    t.stage(at(4, 2, 10, 0, 1), "adoption_answer_requested", "adoption")
    t.stage(at(5, 5, 10), "adoption_answered", "closed", actor="agency:STNMT", status="adopted")
    return t


def request_b() -> Trail:
    """Critique, from SXD: a supplement round, an invitation that expires unanswered, then
    withdrawn in the middle of the review."""
    t = Trail("R-B", "SXD", "critique", ["construction"], at(3, 2))
    # Screening due Mon 9 Mar; the supplement due Wed 18 Mar; screening again due Wed 18 Mar.
    t.stage(at(3, 4, 10), "supplement_requested", "supplement", actor=COORDINATOR, note="map")
    t.stage(at(3, 11, 15), "supplemented", "screening", actor="agency:SXD", note="attached")
    t.stage(at(3, 12), "screening_accepted", "council", actor=COORDINATOR, note="")
    t.stage(at(3, 12, 9, 1), "council_proposed", "council", members=["E05", "E03"])
    t.expert(at(3, 12, 9, 2), "expert_invited", "E05", role="chair")  # respond-by Tue 17 Mar
    t.expert(at(3, 12, 9, 2), "expert_invited", "E03")
    t.stage(at(3, 12, 9, 3), "review_opened", "review")  # due Tue 7 April
    t.expert(at(3, 13, 10), "invitation_accepted", "E05", role="chair")  # due Fri 3 April
    # Silence: the invitation expires at its respond-by, end of Tue 17 March.
    t.expert(at(3, 17, 23, 59, 59), "invitation_expired", "E03")
    t.expert(at(3, 18, 9), "expert_invited", "E06")  # respond-by Mon 23 Mar
    t.expert(at(3, 19, 10), "invitation_accepted", "E06")  # due Thu 9 April
    t.expert(at(3, 25, 10), "assignment_cancelled", "E05", role="chair")
    t.expert(at(3, 25, 10), "assignment_cancelled", "E06")
    t.stage(
        at(3, 25, 10, 1),
        "withdrawn",
        "withdrawn",
        actor="agency:SXD",
        reason="the draft was withdrawn by the province",
        cancelled_assignments=2,
    )
    return t


def request_c() -> Trail:
    """Social assessment, from UBND-BG: declined at screening a day after its deadline."""
    t = Trail("R-C", "UBND-BG", "social_assessment", ["health"], at(4, 6))
    # Screening due end of Mon 13 April.
    t.stage(at(4, 14, 16), "screening_declined", "declined", actor=COORDINATOR, reason="scope")
    return t


def request_d() -> Trail:
    """Advisory, from SXD: the supplement never comes and the request lapses."""
    t = Trail("R-D", "SXD", "advisory", ["construction", "transport"], at(5, 4))
    # Screening due Mon 11 May; the supplement due Tue 19 May, lapsing after 5 days' grace.
    t.stage(at(5, 5, 10), "supplement_requested", "supplement", actor=COORDINATOR, note="budget")
    t.stage(at(5, 26, 23, 59, 59), "supplement_lapsed", "closed", reason="no supplement")
    return t


def straight_through(
    rid: str, agency: str, kind: str, field: str, submitted: datetime, delivered: datetime
) -> Trail:
    """A request that went through without a hitch, its council of one on the day it was
    accepted, its conclusion delivered on `delivered`."""
    t = Trail(rid, agency, kind, [field], submitted)
    accepted = submitted + timedelta(days=1)
    t.stage(accepted, "screening_accepted", "council", actor=COORDINATOR, note="")
    t.stage(accepted, "council_proposed", "council", members=["E07"])
    t.expert(accepted, "expert_invited", "E07", role="chair")
    t.stage(accepted, "review_opened", "review")
    t.expert(accepted, "invitation_accepted", "E07", role="chair")
    t.expert(accepted, "opinion_submitted", "E07", role="chair", recommendation="endorse")
    t.stage(accepted, "synthesis_opened", "synthesis", chair="E07", opinions=1)
    t.stage(accepted, "conclusion_drafted", "approval", actor="expert:E07", version=1)
    t.stage(delivered, "conclusion_approved", "delivered", actor=COORDINATOR, version=1)
    t.stage(delivered + timedelta(seconds=1), "adoption_answer_requested", "adoption")
    return t


def request_e() -> Trail:
    """Critique, UBND-BG: partially adopted, after its deadline (Mon 27 July)."""
    t = straight_through("R-E", "UBND-BG", "critique", "health", at(6, 1), at(6, 15, 15))
    return t.stage(
        at(7, 29), "adoption_answered", "closed", actor="agency:UBND-BG", status="partially_adopted"
    )


def request_f() -> Trail:
    """Advisory, STNMT: not adopted, in time (due Wed 22 July)."""
    t = straight_through("R-F", "STNMT", "advisory", "environment", at(5, 18), at(6, 10, 15))
    return t.stage(
        at(6, 19), "adoption_answered", "closed", actor="agency:STNMT", status="not_adopted"
    )


def request_g() -> Trail:
    """Advisory, SXD: no answer; its deadline (Thu 4 June) has passed."""
    return straight_through("R-G", "SXD", "advisory", "transport", at(4, 1), at(4, 20, 15))


def request_h() -> Trail:
    """Critique, SXD: delivered in July; its answer is not due until Fri 28 August."""
    return straight_through("R-H", "SXD", "critique", "construction", at(7, 1), at(7, 20, 15))


def year() -> list[Trail]:
    return [
        request_a(),
        request_b(),
        request_c(),
        request_d(),
        request_e(),
        request_f(),
        request_g(),
        request_h(),
    ]


def report(*trails: Trail, period: str = "2026", as_of: datetime = AS_OF, **filters) -> Report:
    return build_report(
        [t.facts for t in trails],
        [e for t in trails for e in t.events],
        parse_period(period),
        policy=POLICY,
        as_of=as_of,
        report_filter=ReportFilter(**filters) if filters else None,
    )


# --- turnaround and time in stage ---------------------------------------------------------------


def test_turnaround_counts_working_days_and_skips_tet():
    r = report(request_a())
    # Mon 9 Feb to Thu 2 Apr: 38 weekdays after the day of intake, less Tết's five (16–20 Feb).
    assert (r.turnaround.count, r.turnaround.median, r.turnaround.p90) == (1, 33, 33)
    assert r.volumes.completed == 1


def test_time_in_each_stage_of_one_request():
    s = report(request_a()).time_in_stage
    assert (s["screening"].count, s["screening"].median) == (1, 2)
    assert (s["council"].count, s["council"].median) == (1, 0)
    # 11 Feb to 20 Mar: Tết's week does not count.
    assert (s["review"].count, s["review"].median) == (1, 22)
    # Two visits each: the draft was returned once.
    assert (s["synthesis"].count, s["synthesis"].median, s["synthesis"].p90) == (2, 1, 2)
    assert (s["approval"].count, s["approval"].median, s["approval"].p90) == (2, 1, 5)
    # 2 Apr to 5 May: 23 weekdays, less 27 Apr, 30 Apr and 1 May.
    assert (s["adoption"].count, s["adoption"].median) == (1, 20)
    assert s["supplement"].count == 0


def test_time_in_stage_over_several_requests_with_a_withdrawal():
    s = report(request_a(), request_b(), request_c(), request_d()).time_in_stage
    # A 2; B 2 then 1 (the supplement round); C 6 (declined); D 1.
    assert (s["screening"].count, s["screening"].median, s["screening"].p90) == (5, 2, 6)
    # B 5 (supplemented); D 15 (lapsed: the time until the request closed counts).
    assert (s["supplement"].count, s["supplement"].median, s["supplement"].p90) == (2, 5, 15)
    # A 22; B 9, up to its withdrawal on 25 March.
    assert (s["review"].count, s["review"].median, s["review"].p90) == (2, 9, 22)
    assert s["review"].left_by_withdrawal == 1
    assert s["screening"].left_by_withdrawal == 0


def test_a_stage_counts_in_the_period_it_was_left():
    # A was in review from 11 February to 20 March.
    assert report(request_a(), period="2026-02").time_in_stage["review"].count == 0
    march = report(request_a(), period="2026-03").time_in_stage["review"]
    assert (march.count, march.median) == (1, 22)


def test_a_withdrawal_mid_review_is_never_completed():
    r = report(request_b())
    v = r.volumes
    assert (v.received, v.completed, v.withdrawn) == (1, 0, 1)
    assert r.turnaround.count == 0
    assert r.adoption.delivered == 0
    # The review's deadline (7 April) had not come: neither met nor missed.
    council = r.on_time_for("council", "review")
    assert (council.on_time, council.late) == (0, 0)
    # Nor had the two accepted experts' due dates: cancelled, not late.
    opinions = r.on_time_for("expert", "review")
    assert (opinions.on_time, opinions.late) == (0, 0)


def test_a_request_counts_as_the_log_stood_at_as_of():
    r = report(request_a(), as_of=at(3, 31, 12))
    assert r.volumes.completed == 0
    assert r.turnaround.count == 0
    assert r.time_in_stage["review"].count == 1
    # The second draft's approval (due 31 March) has not been missed yet at noon that day.
    assert r.on_time_for("coordinator", "approval").late == 0


# --- volumes ------------------------------------------------------------------------------------


def test_volumes_per_period_and_month():
    r = report(*year())
    v = r.volumes
    assert (v.received, v.completed, v.withdrawn, v.declined, v.lapsed) == (8, 5, 1, 1, 1)
    assert list(r.per_month) == [f"2026-{m:02d}" for m in range(1, 13)]
    received = {m: x.received for m, x in r.per_month.items() if x.received}
    assert received == {
        "2026-02": 1,
        "2026-03": 1,
        "2026-04": 2,
        "2026-05": 2,
        "2026-06": 1,
        "2026-07": 1,
    }
    april = r.per_month["2026-04"]
    assert (april.completed, april.declined, april.withdrawn) == (2, 1, 0)
    assert r.per_month["2026-03"].withdrawn == 1
    assert r.per_month["2026-05"].lapsed == 1


def test_volumes_by_kind_agency_and_field():
    r = report(*year())
    k = r.by_kind
    assert (k["advisory"].received, k["advisory"].completed, k["advisory"].lapsed) == (4, 3, 1)
    assert (k["critique"].received, k["critique"].completed, k["critique"].withdrawn) == (3, 2, 1)
    assert (k["social_assessment"].received, k["social_assessment"].declined) == (1, 1)
    a = r.by_agency
    assert sorted(a) == ["STNMT", "SXD", "UBND-BG"]
    assert (a["SXD"].received, a["SXD"].completed, a["SXD"].withdrawn, a["SXD"].lapsed) == (
        4,
        2,
        1,
        1,
    )
    assert (a["STNMT"].received, a["STNMT"].completed) == (2, 2)
    f = r.by_field
    # A request counts under each of its fields: D is construction and transport.
    assert (f["construction"].received, f["construction"].completed) == (3, 1)
    assert (f["transport"].received, f["transport"].lapsed) == (2, 1)
    assert (f["land"].received, f["environment"].received) == (1, 2)


def test_turnaround_median_and_p90_over_a_quarter():
    r = report(*year(), period="2026-Q2")
    # Delivered in Q2: G 13, E 10, F 17, A 33 (nearest rank: the 2nd and the 4th of four).
    assert (r.turnaround.count, r.turnaround.median, r.turnaround.p90) == (4, 13, 33)
    # The whole year adds H (13): 10, 13, 13, 17, 33.
    y = report(*year()).turnaround
    assert (y.count, y.median, y.p90) == (5, 13, 33)


# --- on time, per party -------------------------------------------------------------------------


def test_on_time_per_stage_and_party():
    r = report(request_a(), request_b(), request_c(), request_d())

    def row(party, deadline):
        o = r.on_time_for(party, deadline)
        return o.on_time, o.late

    # A, B (twice) and D screened in time; C declined a day late.
    assert row("coordinator", "screening") == (4, 1)
    # B supplemented in time; D lapsed.
    assert row("agency", "supplement") == (1, 1)
    # Every answer in time but B's E03, who never answered.
    assert row("expert", "respond") == (6, 1)
    # E01 in time, E04 in time thanks to an extension, E03 two days late.
    assert row("expert", "review") == (2, 1)
    # A's council finished within its extended deadline; B's was withdrawn before its own.
    assert row("council", "review") == (1, 0)
    assert row("chair", "synthesis") == (2, 0)
    # The returned draft was decided in time, the second was approved two days late.
    assert row("coordinator", "approval") == (1, 1)
    assert row("agency", "adoption") == (1, 0)
    coordinator = r.on_time_by_party["coordinator"]
    assert (coordinator.on_time, coordinator.late) == (5, 2)
    assert coordinator.rate == pytest.approx(5 / 7)


def test_extensions_per_party_with_the_working_days_they_added():
    r = report(request_a())
    council = r.on_time_for("council", "review")
    assert (council.extensions, council.extension_days) == (1, 5)  # 16 → 23 March
    expert = r.on_time_for("expert", "review")
    assert (expert.extensions, expert.extension_days) == (1, 5)  # 17 → 24 March
    assert r.on_time_for("coordinator", "screening").extensions == 0
    assert r.on_time_by_party["expert"].extensions == 1


def test_a_late_action_counts_on_its_deadline_day():
    # C's screening was due Mon 13 April and decided on the 14th: late, and in the month of
    # its deadline — a month-end report does not change when the late decision comes.
    assert report(request_c(), period="2026-04").on_time_for("coordinator", "screening").late == 1
    after = report(request_c(), period="2026-04-14..2026-04-30")
    assert after.volumes.declined == 1
    assert after.on_time_for("coordinator", "screening").late == 0
    # D's supplement was due 19 May; the request lapsed on the 26th.
    assert (
        report(request_d(), period="2026-05-19..2026-05-19")
        .on_time_for("agency", "supplement")
        .late
        == 1
    )


# --- experts ------------------------------------------------------------------------------------


def test_expert_invitations_answers_and_opinions():
    r = report(request_a(), request_b())
    experts = {e.expert_code: e for e in r.experts}
    assert sorted(experts) == ["E01", "E02", "E03", "E04", "E05", "E06"]
    e02 = experts["E02"]
    assert (e02.invited, e02.declined, e02.decline_rate) == (1, 1, 1.0)
    e03 = experts["E03"]  # accepted A, let B's invitation expire, ran late on A
    assert (e03.invited, e03.accepted, e03.expired) == (2, 1, 1)
    assert (e03.acceptance_rate, e03.expiry_rate) == (0.5, 0.5)
    assert (e03.opinions_on_time, e03.opinions_late) == (0, 1)
    assert (experts["E04"].opinions_on_time, experts["E04"].opinions_late) == (1, 0)
    total = r.experts_total
    assert (total.invited, total.accepted, total.declined, total.expired) == (7, 5, 1, 1)
    assert total.acceptance_rate == pytest.approx(5 / 7)
    assert total.decline_rate == pytest.approx(1 / 7)
    assert (total.opinions_on_time, total.opinions_late) == (2, 1)


def test_expert_load_is_the_most_assignments_open_at_once_per_month():
    r = report(request_a(), request_b(), period="2026-Q1")
    load = {e.expert_code: e.load for e in r.experts}
    # E03 carried A from 11 Feb to 18 Mar, and B's invitation from 12 to 17 Mar.
    assert load["E03"] == {"2026-01": 0, "2026-02": 1, "2026-03": 2}
    # E01 submitted on 10 March and carried nothing after.
    assert load["E01"] == {"2026-01": 0, "2026-02": 1, "2026-03": 1}
    assert report(request_a(), request_b(), period="2026-04").experts == []


def test_expert_load_counts_assignments_at_once_not_one_after_another():
    # E01 submits A's opinion on 10 March and chairs I from the 11th: two in March, one at once.
    i = Trail("R-I", "STNMT", "advisory", ["environment"], at(3, 9))
    i.stage(at(3, 11), "screening_accepted", "council", actor=COORDINATOR, note="")
    i.stage(at(3, 11, 9, 1), "council_proposed", "council", members=["E01"])
    i.expert(at(3, 11, 9, 2), "expert_invited", "E01", role="chair")
    i.stage(at(3, 11, 9, 3), "review_opened", "review")
    i.expert(at(3, 12), "invitation_accepted", "E01", role="chair")
    r = report(request_a(), i, period="2026-03")
    assert [e.load for e in r.experts if e.expert_code == "E01"] == [{"2026-03": 1}]


# --- adoption -----------------------------------------------------------------------------------


def test_adoption_answers_per_agency_and_kind():
    r = report(*year())
    a = r.adoption
    assert (a.delivered, a.adopted, a.partially_adopted, a.not_adopted) == (5, 1, 1, 1)
    assert (a.no_answer, a.awaiting, a.answered_late) == (1, 1, 1)
    stnmt, sxd, bg = (r.adoption_by_agency[c] for c in ("STNMT", "SXD", "UBND-BG"))
    assert (stnmt.delivered, stnmt.adopted, stnmt.not_adopted) == (2, 1, 1)
    assert (sxd.delivered, sxd.no_answer, sxd.awaiting) == (2, 1, 1)
    assert (bg.partially_adopted, bg.answered_late) == (1, 1)
    advisory, critique = r.adoption_by_kind["advisory"], r.adoption_by_kind["critique"]
    assert (advisory.adopted, advisory.not_adopted, advisory.no_answer) == (1, 1, 1)
    assert (critique.partially_adopted, critique.awaiting) == (1, 1)
    assert r.adoption_by_kind["social_assessment"].delivered == 0
    # A and F answered in time; E answered late; G never did; H is not due yet.
    adoption = r.on_time_for("agency", "adoption")
    assert (adoption.on_time, adoption.late) == (2, 2)


def test_no_answer_only_once_the_deadline_has_passed():
    early = report(request_g(), as_of=at(6, 4, 12))  # G's answer is due at the end of 4 June
    assert (early.adoption.no_answer, early.adoption.awaiting) == (0, 1)
    late = report(request_g(), as_of=at(6, 5, 8))
    assert (late.adoption.no_answer, late.adoption.awaiting) == (1, 0)


# --- filters ------------------------------------------------------------------------------------


def test_filters_choose_which_requests_count():
    sxd = report(*year(), agencies={"SXD"})
    assert (sxd.volumes.received, sxd.volumes.withdrawn, sxd.volumes.lapsed) == (4, 1, 1)
    assert list(sxd.by_agency) == ["SXD"]
    both = report(*year(), agencies={"SXD"}, kinds={"critique"})
    assert (both.volumes.received, both.volumes.completed) == (2, 1)  # B and H
    either = report(*year(), agencies={"SXD", "STNMT"})
    assert either.volumes.received == 6
    built = report(*year(), fields={"Construction"})
    assert (built.volumes.received, built.volumes.lapsed) == (3, 1)  # B, D, H
    # D is also in transport; a field filter shows the fields it asked for.
    assert list(built.by_field) == ["construction"]
    # The experts of the environment requests: A's council and F's.
    green = report(*year(), fields={"environment"})
    assert [e.expert_code for e in green.experts] == ["E01", "E02", "E03", "E04", "E07"]


def test_a_filter_naming_what_no_registry_knows_is_refused():
    f = ReportFilter(agencies={"SXD", "XYZ"})
    with pytest.raises(ReportInputError, match=r"^agencies: .*'XYZ'") as err:
        f.check_known(agencies=["SXD", "STNMT"], fields=["construction"])
    assert err.value.field == "agencies"
    with pytest.raises(ReportInputError, match=r"^fields: .*'astrology'"):
        ReportFilter(fields={"astrology"}).check_known(agencies=[], fields=["construction"])
    ReportFilter(agencies={"SXD"}, fields={"Construction"}).check_known(
        agencies=["SXD"], fields=["construction"]
    )


# --- the empty period ---------------------------------------------------------------------------


def test_a_period_with_nothing_in_it_is_an_empty_report():
    r = report(*year(), period="2025-Q4")
    assert r.empty is True
    assert r.model_dump()["empty"] is True
    assert not r.volumes.any()
    assert list(r.per_month) == ["2025-10", "2025-11", "2025-12"]
    assert (r.turnaround.count, r.turnaround.median, r.turnaround.p90) == (0, None, None)
    assert all(o.rate is None for o in r.on_time)
    assert r.experts == [] and r.adoption.delivered == 0
    assert report(*year(), agencies={"SXD"}, kinds={"social_assessment"}).empty is True
    assert report(*year()).empty is False


# --- periods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end", "label"),
    [
        ("2026", "2026-01-01", "2026-12-31", "2026"),
        ("2026-Q3", "2026-07-01", "2026-09-30", "2026-Q3"),
        (" 2026-q1 ", "2026-01-01", "2026-03-31", "2026-Q1"),
        ("2026-07", "2026-07-01", "2026-07-31", "2026-07"),
        ("2026-02", "2026-02-01", "2026-02-28", "2026-02"),
        ("2024-02", "2024-02-01", "2024-02-29", "2024-02"),
        ("2026-12", "2026-12-01", "2026-12-31", "2026-12"),
        ("2026-01-01..2026-06-30", "2026-01-01", "2026-06-30", "2026-01-01..2026-06-30"),
        ("2026-03-05 .. 2026-03-05", "2026-03-05", "2026-03-05", "2026-03-05..2026-03-05"),
    ],
)
def test_periods_people_type(text, start, end, label):
    p = parse_period(text)
    assert (p.start.isoformat(), p.end.isoformat(), p.label) == (start, end, label)


def test_a_period_knows_its_months():
    assert parse_period("2026-Q3").months() == ["2026-07", "2026-08", "2026-09"]
    assert parse_period("2025-12-15..2026-01-10").months() == ["2025-12", "2026-01"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "is not a period"),
        ("26", "is not a period"),
        ("last year", "is not a period"),
        ("2026-Q5", "a quarter is Q1 to Q4"),
        ("2026-Q0", "a quarter is Q1 to Q4"),
        ("2026-13", "a month is 01 to 12"),
        ("2026-00", "a month is 01 to 12"),
        ("2026-02-30..2026-03-01", "is not a date the calendar has"),
        ("0000", "is not a date the calendar has"),
        ("2026-06-30..2026-01-01", "ends before it starts"),
        ("2016-01-01..2026-01-01", "a report covers at most 10 years"),
        ("2024-02-29..2034-02-28", "a report covers at most 10 years"),
    ],
)
def test_a_malformed_or_inverted_period_is_refused(text, rule):
    with pytest.raises(ReportInputError, match=r"^period: ") as err:
        parse_period(text)
    assert rule in str(err.value)
    assert err.value.field == "period"


def test_percentiles_by_nearest_rank():
    assert (percentile(range(1, 11), 50), percentile(range(1, 11), 90)) == (5, 9)
    assert (percentile([3, 1], 50), percentile([3, 1], 90)) == (1, 3)
    assert (percentile([7], 50), percentile([7], 90)) == (7, 7)
    assert percentile([], 50) is None
