"""The Union's past, planned as the engine would have recorded it: requests arriving with the
seasons, and each one's whole life as the `TransitionInput`s its request and assignment
workflows build — the same actions, stages, details, step names and records, from intake to its
end. Pure: no I/O and no clock (the caller says what "now" is); the same seed, span and
registries give the same plan.

    arrivals, day by day (seed, day)            one request's life (seed, request id)
    ────────────────────────────────            ─────────────────────────────────────
    each working day of the span                intake ─► screening ─┬─► council ─► review ...
      × its month's season (plans are due                            ├─► supplement ─► screening
        before mid-year and year-end)                                │       └─► lapsed
      × almost nothing around Tết                                    └─► declined
      ▼                                         people act on working days in office hours,
    kind, agency, fields, title                 each expert with their habits; the engine's
                                                own steps follow the policy: reminders,
                                                expiries, alternates, escalations, quorum

Requests are planned in the order they arrive, so an expert's load (their open invitations
from the requests before) is what the council matching saw. A request whose council cannot
reach its quorum is not planned (the office would not have taken it); the caller leaves out
those not ended by "now".
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from hashlib import sha256
from typing import Any

from domain.calendar import VN_TZ, WorkingCalendar
from domain.ids import assignment_workflow_id, history_request_id, review_workflow_id
from domain.matching import Candidate, MatchRequest, exclusion, propose_councils
from domain.messages import (
    AssignmentRecord,
    IntakeRecord,
    OpinionRecord,
    TransitionInput,
)
from domain.models import (
    AdoptionAnswer,
    AdoptionStatus,
    Agency,
    AssignmentState,
    AssignmentView,
    ConclusionView,
    Contact,
    Coordinator,
    CouncilCandidate,
    Document,
    Expert,
    OpinionInput,
    Recommendation,
    RegisteredAgency,
    RequestKind,
    RequestSubmission,
    Role,
    Stage,
    fold,
)
from domain.policy import KindPolicy, Policy
from workflows.common import Refused
from workflows.deadlines import check_extension_bounds
from workflows.review.actions import DEADLINES
from workflows.review.automatic import conclusion_record, council_details

# --- the span ---------------------------------------------------------------------------------

SPAN_RULE = "a span back from today in months or years, from 1m to 10y: for example 2y or 18m"
MAX_MONTHS = 120


def parse_span(text: str) -> int:
    """Months back from today ("2y" → 24, "18m" → 18). Raises ValueError with the rule."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([ym])\s*", (text or "").lower())
    if m is None:
        raise ValueError(f"{text!r} is not {SPAN_RULE}")
    months = int(m[1]) * (12 if m[2] == "y" else 1)
    if not 1 <= months <= MAX_MONTHS:
        raise ValueError(f"{text!r} is out of range: {SPAN_RULE}")
    return months


def span_start(today: date, months: int) -> date:
    """The first day of the month `months` before this one: a rerun within the month plans
    the same past."""
    y, m = divmod(today.year * 12 + today.month - 1 - months, 12)
    return date(y, m + 1, 1)


# --- who takes part -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registries:
    """The agencies, experts and coordinators the past is made of (the active ones)."""

    agencies: list[RegisteredAgency]
    experts: list[Expert]
    coordinators: list[Coordinator]


@dataclass(frozen=True)
class Habit:
    """How an expert answers: the chances of accepting and of declining (the rest: silence
    until the invitation expires), and of an accepted review coming in after its due date."""

    accept: float
    decline: float
    late: float


HABITS = {
    "reliable": Habit(accept=0.88, decline=0.09, late=0.06),
    "declines": Habit(accept=0.45, decline=0.50, late=0.08),
    "silent": Habit(accept=0.6, decline=0.08, late=0.1),
    "late": Habit(accept=0.85, decline=0.10, late=0.6),
}


def habits(seed: int, experts: list[Expert]) -> dict[str, str]:
    """Each expert's habit: a few habitually late, a couple who often decline, a couple who
    often let an invitation expire; the others reliable."""
    codes = sorted(e.code for e in experts)
    random.Random(f"{seed}:habits").shuffle(codes)
    named = ["late"] * 3 + ["declines"] * 2 + ["silent"] * 2
    return {c: (named[i] if i < len(named) else "reliable") for i, c in enumerate(codes)}


# --- what the requests are about ----------------------------------------------------------------

# Which fields each sample agency's drafts are in, most usual first. An agency not listed
# draws its fields from those the registry's experts work in.
AGENCY_FIELDS = {
    "STNMT": ["moi-truong", "quy-hoach", "thuy-loi", "phap-luat"],
    "SXD": ["quy-hoach", "giao-thong", "kinh-te", "phap-luat"],
    "SNNMT": ["nong-nghiep", "thuy-loi", "moi-truong", "kinh-te"],
    "SYT": ["y-te", "cong-nghe-thong-tin", "phap-luat", "kinh-te"],
    "SGTVT": ["giao-thong", "quy-hoach", "kinh-te", "moi-truong"],
}

SUBJECTS = {
    "moi-truong": [
        "Kế hoạch bảo vệ môi trường lưu vực sông Cầu",
        "Đề án thu gom, xử lý chất thải rắn sinh hoạt",
        "Phương án quan trắc chất lượng không khí",
        "Kế hoạch ứng phó sự cố môi trường",
    ],
    "quy-hoach": [
        "Quy hoạch phân khu đô thị phía Nam",
        "Điều chỉnh quy hoạch chung đô thị",
        "Kế hoạch sử dụng đất cấp tỉnh",
        "Quy hoạch chi tiết khu công nghiệp",
    ],
    "nong-nghiep": [
        "Đề án phát triển vùng trồng cây ăn quả tập trung",
        "Chương trình mỗi xã một sản phẩm (OCOP)",
        "Kế hoạch chuyển đổi cơ cấu cây trồng",
    ],
    "giao-thong": [
        "Dự án nâng cấp, mở rộng tuyến đường tỉnh",
        "Quy hoạch mạng lưới giao thông nông thôn",
        "Đề án phát triển vận tải hành khách công cộng",
    ],
    "phap-luat": [
        "Dự thảo Nghị quyết của HĐND tỉnh quy định mức thu phí, lệ phí",
        "Dự thảo Quyết định ban hành quy chế quản lý",
        "Dự thảo quy định phân cấp quản lý nhà nước",
    ],
    "kinh-te": [
        "Đề án thu hút đầu tư vào các khu công nghiệp",
        "Kế hoạch phát triển kinh tế tập thể",
        "Chương trình hỗ trợ doanh nghiệp nhỏ và vừa",
    ],
    "giao-duc": [
        "Đề án phát triển trường trung học chất lượng cao",
        "Kế hoạch sắp xếp mạng lưới trường học",
    ],
    "y-te": [
        "Đề án nâng cao năng lực y tế cơ sở",
        "Kế hoạch phòng, chống dịch bệnh truyền nhiễm",
        "Dự án đầu tư trang thiết bị cho bệnh viện tuyến huyện",
    ],
    "cong-nghe-thong-tin": [
        "Đề án chuyển đổi số của tỉnh",
        "Kế hoạch xây dựng chính quyền số",
        "Dự án trung tâm dữ liệu dùng chung",
    ],
    "thuy-loi": [
        "Dự án nâng cấp hệ thống kênh tưới",
        "Phương án phòng, chống thiên tai",
        "Kế hoạch kiên cố hóa kênh mương nội đồng",
    ],
}

KIND_WORDS = {
    RequestKind.advisory: "tư vấn",
    RequestKind.critique: "phản biện",
    RequestKind.social_assessment: "giám định xã hội",
}
KIND_SHARE = {
    RequestKind.advisory: 0.35,
    RequestKind.critique: 0.50,
    RequestKind.social_assessment: 0.15,
}

# What people write, in their words.
SUPPLEMENT_NOTES = [
    "Bổ sung báo cáo đánh giá tác động môi trường.",
    "Bổ sung ý kiến góp ý của các sở, ngành liên quan.",
    "Bổ sung thuyết minh chi tiết và dự toán kinh phí.",
    "Bổ sung số liệu khảo sát hiện trạng.",
]
SCREENING_DECLINES = [
    "Nội dung không thuộc phạm vi tư vấn, phản biện và giám định xã hội của Liên hiệp hội.",
    "Dự thảo đã được Liên hiệp hội phản biện trong năm; không xem xét lại.",
    "Thời gian đề nghị quá ngắn so với quy định; đề nghị cơ quan gửi lại khi đủ thời gian.",
]
NO_EXPERTS = (
    "Liên hiệp hội không bố trí đủ chuyên gia trong thời hạn đề nghị; đề nghị cơ quan gửi lại sau."
)
SUPPLEMENT_SENT = ["Gửi tài liệu bổ sung theo đề nghị.", "Đã bổ sung đầy đủ hồ sơ."]
WITHDRAWALS = [
    "Dự thảo được điều chỉnh theo chỉ đạo mới của UBND tỉnh.",
    "Đề án tạm dừng để rà soát lại phạm vi.",
    "Cơ quan soạn thảo rút hồ sơ để hoàn thiện thêm.",
]
EXPERT_DECLINES = [
    "Đang công tác nước ngoài trong thời gian phản biện.",
    "Trùng lịch giảng dạy cuối học kỳ.",
    "Đang tham gia hội đồng khác, không bảo đảm thời gian.",
    "Lý do sức khỏe.",
]
EXTENSION_REASONS = {
    "supplement": "Cơ quan đề nghị thêm thời gian để lấy ý kiến các đơn vị liên quan.",
    "review": "Hội đồng đề nghị thêm thời gian do hồ sơ có nhiều nội dung chuyên sâu.",
    "expert": "Chuyên gia đề nghị gia hạn do bận công tác đột xuất.",
    "synthesis": "Chủ tịch hội đồng đề nghị thêm thời gian tổng hợp ý kiến.",
    "adoption": "Cơ quan đề nghị gia hạn để trình lãnh đạo UBND tỉnh cho ý kiến.",
}
REPLACEMENT_REASON = "Chuyên gia quá hạn gửi ý kiến và không phản hồi; mời chuyên gia dự bị."
RETURN_COMMENTS = [
    "Nêu rõ kiến nghị về nguồn lực thực hiện.",
    "Làm rõ căn cứ pháp lý của các kiến nghị.",
    "Rút gọn phần tổng quan, tập trung vào kiến nghị.",
]
OPINIONS = {
    Recommendation.endorse: (
        "Dự thảo có cơ sở khoa học và thực tiễn, đủ điều kiện ban hành.",
        "Thống nhất với dự thảo; đề nghị sớm triển khai.",
    ),
    Recommendation.endorse_with_changes: (
        "Dự thảo cơ bản phù hợp; một số nội dung cần làm rõ.",
        "Bổ sung số liệu hiện trạng, lộ trình và nguồn lực thực hiện.",
    ),
    Recommendation.do_not_endorse: (
        "Dự thảo chưa đủ cơ sở; phạm vi và giải pháp chưa phù hợp.",
        "Đề nghị nghiên cứu lại phạm vi điều chỉnh trước khi trình.",
    ),
}
CONCLUSIONS = {
    Recommendation.endorse: "Hội đồng thống nhất đề nghị thông qua dự thảo.",
    Recommendation.endorse_with_changes: (
        "Hội đồng thống nhất đề nghị thông qua dự thảo với các sửa đổi đã nêu."
    ),
    Recommendation.do_not_endorse: "Hội đồng đề nghị chưa thông qua dự thảo; cần xây dựng lại.",
}
ADOPTION_SHARE = {
    AdoptionStatus.adopted: 0.45,
    AdoptionStatus.partially_adopted: 0.40,
    AdoptionStatus.not_adopted: 0.15,
}
ADOPTION_ANSWERS = {
    AdoptionStatus.adopted: "Tiếp thu toàn bộ ý kiến của Hội đồng trong dự thảo trình.",
    AdoptionStatus.partially_adopted: (
        "Tiếp thu phần lớn ý kiến; một số kiến nghị chưa tiếp thu do nguồn lực có hạn."
    ),
    AdoptionStatus.not_adopted: "Giữ nguyên dự thảo do đã được cấp có thẩm quyền cho chủ trương.",
}
# The engine's own words (workflows/review/automatic.py, _lapse).
LAPSE_REASON = "the supplement was not received within the deadline and its grace period"

# --- arrivals -----------------------------------------------------------------------------------

# Requests per working day before the season's weight: about 140 a year.
PER_DAY = 0.6
# Plans are drafted for the mid-year and year-end sessions of the People's Council: more
# requests in spring and late autumn, fewer in summer.
SEASON = {1: 1.0, 2: 0.8, 3: 1.0, 4: 1.15, 5: 1.45, 6: 1.35, 7: 0.8, 8: 0.7, 9: 0.9}
SEASON |= {10: 1.15, 11: 1.45, 12: 1.3}
TET_DAMPING = 0.05
OFFICE_HOURS = ((time(7, 30), time(11, 30)), (time(13, 30), time(17, 0)))
TICK = timedelta(milliseconds=50)  # between an action and the engine's steps it sets off


@dataclass(frozen=True)
class Arrival:
    request_id: str
    at: datetime
    submission: RequestSubmission


@dataclass
class PastRequest:
    """One request of the past: how it ended and every transition of it, in order."""

    request_id: str
    kind: RequestKind
    agency_code: str
    submitted_at: datetime
    outcome: str  # closed (answered on adoption), lapsed, declined, withdrawn
    adoption: str | None
    transitions: list[TransitionInput]

    @property
    def ended_at(self) -> datetime:
        return self.transitions[-1].at


class _NoCouncil(Exception):
    """Too few experts could be seated to reach the quorum: the office would have declined
    the request at screening, knowing it had no one free."""


# --- the world the requests share ---------------------------------------------------------------


class _Loads:
    """Every expert's assignments in the requests planned so far, (invited, closed).

    Requests are planned in the order they arrive, but their councils sit in another order
    (one screened in a day overtakes one screened in a week), and an alternate is invited
    weeks into a review. So an expert's load for a seat is the most assignments they hold at
    once over the seat's review window, not at its first moment: a seat given only below the
    limit over the whole window keeps the expert within it."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)

    def peak(self, code: str, start: datetime, end: datetime) -> int:
        steps = sorted(
            (x, d)
            for a, b in self.spans[code]
            if a < end and start < b
            for x, d in ((max(a, start), 1), (b, -1))
        )
        most = held = 0
        for _, d in steps:
            held += d
            most = max(most, held)
        return most


class World:
    """What every request's life reads: the policy, the calendar, the people and their habits,
    and the experts' load from the requests planned before."""

    def __init__(self, seed: int, reg: Registries, policy: Policy, cal: WorkingCalendar):
        self.seed, self.reg, self.policy, self.cal = seed, reg, policy, cal
        self.habits = habits(seed, reg.experts)
        self.loads = _Loads()
        self.experts = {e.code: e for e in reg.experts}
        # Who signs: the Union's leaders; who screens and extends: its office.
        signers = [c for c in reg.coordinators if "chủ tịch" in fold(c.title)]
        office = [c for c in reg.coordinators if c not in signers]
        self.signers = signers or reg.coordinators
        self.office = office or reg.coordinators
        weights = random.Random(f"{seed}:agencies")
        self.agency_weights = [weights.uniform(0.6, 1.6) for _ in reg.agencies]
        self.fields = sorted({f for e in reg.experts for f in e.expertise})
        self._tet: dict[date, bool] = {}
        self._working: dict[date, bool] = {}

    # --- time ---

    def working(self, day: date) -> bool:
        known = self._working.get(day)
        if known is None:
            known = self._working[day] = self.cal.is_working_day(day)
        return known

    def due(self, start: datetime, days: int, kp: KindPolicy) -> datetime:
        return self.cal.due(start, days, kp.calendar)

    def office_moment(
        self, day: date, rng: random.Random, after: datetime | None = None
    ) -> datetime | None:
        """A moment in `day`'s office hours, Vietnam time, later than `after`; None when the
        day is not a working day or its hours are over."""
        if not self.working(day):
            return None
        slots = []
        for a, b in OFFICE_HOURS:
            start, end = datetime.combine(day, a, VN_TZ), datetime.combine(day, b, VN_TZ)
            if after is not None:
                start = max(start, after + timedelta(minutes=1))
            if start < end:
                slots.append((start, end))
        if not slots:
            return None
        x = rng.uniform(0, sum((e - s).total_seconds() for s, e in slots))
        for s, e in slots:
            if x <= (e - s).total_seconds():
                return (s + timedelta(seconds=x)).replace(microsecond=0)
            x -= (e - s).total_seconds()
        return slots[-1][0]

    def later(self, t: datetime, days: int, rng: random.Random) -> datetime:
        """When a person acts `days` working days from `t`'s day (0: that day, after `t`;
        below 0: before it), in office hours; the next working day's when that day's hours
        are over."""
        day, step = self.cal.local_date(t), 1 if days >= 0 else -1
        n = 0
        while n < abs(days):
            day += timedelta(days=step)
            n += self.working(day)
        after = t if days >= 0 else None
        while (moment := self.office_moment(day, rng, after=after)) is None:
            day += timedelta(days=1)
        return moment

    # --- arrivals ---

    def tet(self, day: date) -> bool:
        """Around Tết: five public holidays or more from a week before the day to ten days
        after it (no other Vietnamese holiday season has as many)."""
        known = self._tet.get(day)
        if known is None:
            near = sum(
                1
                for d in range(-7, 11)
                if self.cal.holiday_name(day + timedelta(days=d)) is not None
            )
            known = self._tet[day] = near >= 5
        return known

    def arrivals(self, day: date) -> list[Arrival]:
        """The requests submitted on `day`, from the seed and the day alone."""
        if not self.working(day):
            return []
        rng = random.Random(f"{self.seed}:{day.isoformat()}")
        rate = PER_DAY * SEASON[day.month] * (TET_DAMPING if self.tet(day) else 1.0)
        out, after = [], None
        for n in range(1, _poisson(rng, rate) + 1):
            at = self.office_moment(day, rng, after=after)
            if at is None:
                break
            after = at
            out.append(self._arrival(history_request_id(self.seed, day, n), at, rng))
        return out

    def _arrival(self, rid: str, at: datetime, rng: random.Random) -> Arrival:
        kind = _pick(rng, KIND_SHARE)
        agency = rng.choices(self.reg.agencies, weights=self.agency_weights)[0]
        usual = [f for f in AGENCY_FIELDS.get(agency.code, []) if f in self.fields]
        if not usual:
            usual = self.fields[:]
            random.Random(f"{self.seed}:{agency.code}").shuffle(usual)
        main = usual[0] if rng.random() < 0.6 else rng.choice(usual)
        others = [f for f in usual if f != main]
        n_fields = rng.choice([1, 2] if kind == RequestKind.advisory else [2, 3])
        fields = [main, *rng.sample(others, min(len(others), n_fields - 1))]
        subject = rng.choice(SUBJECTS.get(main, [f"Đề án thuộc lĩnh vực {main}"]))
        words = KIND_WORDS[kind]
        union = self.policy.union.short_name
        reference = f"{rid.removeprefix('HIST-')}/{agency.code}"
        contact = agency.contacts[0] if agency.contacts else _office_contact(agency)
        submission = RequestSubmission(
            kind=kind,
            title=f"{subject} ({at.year})",
            summary=f"{agency.name} đề nghị {union} {words} {_lower_first(subject)}.",
            agency=Agency(code=agency.code, name=agency.name),
            agency_reference=f"LS-{reference}",
            expertise_fields=fields,
            documents=[
                _document(agency.code, rid, "Dự thảo.pdf", "du-thao"),
                _document(agency.code, rid, "Tờ trình.pdf", "to-trinh"),
            ],
            requested_by=contact,
        )
        return Arrival(rid, at, submission)

    # --- councils ---

    def candidate(self, e: Expert, req: MatchRequest, at: datetime) -> Candidate:
        end = datetime.combine(req.window[1] + timedelta(days=1), time.min, VN_TZ)
        return Candidate(
            code=e.code,
            organisation=e.organisation,
            member_association=e.member_association,
            expertise=dict(e.expertise),
            load=self.loads.peak(e.code, at, end),
            load_limit=e.load_limit,
            active=e.active,
            conflicts=tuple(e.conflicts),
            unavailable=tuple((p.start, p.end) for p in e.unavailable),
        )

    def match_request(
        self, life: _Life, at: datetime, previous: frozenset[str] = frozenset()
    ) -> MatchRequest:
        s, kp = life.submission, life.kp
        agency = next(a for a in self.reg.agencies if a.code == s.agency.code)
        window_end = self.due(at, kp.respond_days + kp.review_days, kp)
        return MatchRequest(
            request_id=life.rid,
            requester=agency.identities(),
            fields=tuple(s.expertise_fields),
            council_size=kp.council_size,
            alternates=kp.alternates,
            window=(self.cal.local_date(at), self.cal.local_date(window_end)),
            previous=previous,
        )


def _poisson(rng: random.Random, rate: float) -> int:
    limit, k, p = math.exp(-rate), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _pick(rng: random.Random, shares: dict[Any, float]) -> Any:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def _document(agency_code: str, rid: str, name: str, slug: str, round_: int = 0) -> Document:
    """A document the agency's own system keeps, referenced by URI (no bytes to store)."""
    uri = f"https://vanban.example.gov.vn/{agency_code.lower()}/{rid.lower()}/{round_}/{slug}.pdf"
    return Document(name=name, uri=uri, sha256=sha256(uri.encode()).hexdigest())


def _office_contact(agency: RegisteredAgency) -> Contact:
    """Who writes for an agency the registry gives no contact: its clerical office."""
    return Contact(
        name=f"Văn thư {agency.name}"[:500],
        email=f"vanthu.{agency.code.lower()}@example.gov.vn",
    )


# --- one expert's assignment ----------------------------------------------------------------------


class _Seat:
    """One invited expert, as `ExpertAssignmentWorkflow` records them: every transition the
    expert would make if nothing stopped them, planned at the invitation; the request
    consumes them in time order and may cut them short (quorum, withdrawal, replacement)."""

    def __init__(self, life: _Life, candidate: CouncilCandidate, role: Role, at: datetime):
        self.life, self.code, self.role = life, candidate.expert_code, role
        self.wf = assignment_workflow_id(life.rid, self.code)
        self.first = AssignmentView(
            expert_code=self.code, role=role, state=AssignmentState.invited, invited_at=at
        )
        self.view = self.first
        self.gen = 0  # the deadline's generation, which reminder keys name
        self.planned: list[tuple[TransitionInput, AssignmentView]] = []
        self.done = 0  # planned transitions already taken
        self.extended = False
        self._plan(life.rng)

    # --- what has happened so far ---

    @property
    def current(self) -> AssignmentView:
        return self.planned[self.done - 1][1] if self.done else self.first

    @property
    def state(self) -> AssignmentState:
        return self.current.state

    def next_at(self) -> datetime | None:
        return self.planned[self.done][0].at if self.done < len(self.planned) else None

    def take(self) -> TransitionInput:
        t = self.planned[self.done][0]
        self.done += 1
        return t

    def cancel(self, at: datetime) -> TransitionInput:
        """Cancelled by the request (withdrawn, replaced, quorum reached without them)."""
        self.planned, self.view = self.planned[: self.done], self.current
        self._record(
            at, "cancelled", "assignment_cancelled", actor="system", state=AssignmentState.cancelled
        )
        return self.take()

    def closed_at(self) -> datetime:
        return self.planned[self.done - 1][0].at

    # --- the plan ---

    def _record(
        self,
        at: datetime,
        step: str,
        action: str,
        *,
        actor: str | None = None,
        details: dict | None = None,
        opinion: OpinionRecord | None = None,
        overdue: bool | None = None,
        clear_overdue: bool = False,
        **changes: Any,
    ) -> None:
        """As `ExpertAssignmentWorkflow._record`: the view's new values, the overdue flag
        cleared when the assignment closes or its deadline moves."""
        old = self.view
        new = old.model_copy(update=changes)
        if overdue is not None:
            new.overdue = overdue
        closes = old.state.is_open and not new.state.is_open
        if (closes or clear_overdue) and old.overdue:
            new.overdue = overdue = False
        t = TransitionInput(
            workflow_id=self.wf,
            request_id=self.life.rid,
            step=step,
            at=at,
            actor=actor or f"expert:{self.code}",
            action=action,
            details={"expert_code": self.code, "role": self.role.value, **(details or {})},
            assignment=AssignmentRecord.of(new),
            opinion=opinion,
            overdue=overdue,
        )
        self.planned.append((t, new))
        self.view = new

    def _watch(self, name: str, start: datetime, due: datetime, until: datetime | None) -> bool:
        """The deadline's reminders from `start` (when it was set) to `until` (when it was met
        or moved); True when it escalated first: the invitation expired, or the review is
        overdue."""
        for at, kind, n in self.life.plan_of(name, start, due):
            if until is not None and at >= until:
                return False
            if kind in ("before", "overdue"):
                self._record(
                    at,
                    f"remind-{name}-g{self.gen}-{kind}-{n}",
                    "reminder_sent",
                    actor="system",
                    details={"deadline": name, "when": kind, "days": n},
                )
            elif kind == "escalate" and name == "respond":
                self._record(
                    at,
                    f"expired-g{self.gen}",
                    "invitation_expired",
                    actor="system",
                    state=AssignmentState.expired,
                )
                return True
            elif kind == "escalate":
                self._record(
                    at,
                    f"escalated-{name}-g{self.gen}",
                    "review_overdue",
                    actor="system",
                    overdue=True,
                    details={"grace_days": n},
                )
                return True
        return False

    def _plan(self, rng: random.Random) -> None:
        life, world, kp = self.life, self.life.world, self.life.kp
        habit = HABITS[world.habits.get(self.code, "reliable")]
        invited = self.first.invited_at
        respond_by = world.due(invited, kp.respond_days, kp)
        self._record(invited, "invited", "expert_invited", actor="system", respond_by=respond_by)
        # The last alternate in line always answers: a seat nobody can fill would leave the
        # request waiting for the office to find someone, which the past does not model.
        last_hope = not life.alternates
        roll = rng.random()
        answer = (
            "accept"
            if roll < habit.accept or last_hope
            else "decline"
            if roll < habit.accept + habit.decline
            else "silent"
        )
        answered = (
            None
            if answer == "silent"
            else world.later(invited, min(kp.respond_days, _weighted(rng, [4, 4, 2, 1])), rng)
        )
        if self._watch("respond", invited, respond_by, answered) or answered is None:
            return  # expired
        if answer == "decline":
            reason = rng.choice(EXPERT_DECLINES)
            self._record(
                answered,
                "declined",
                "invitation_declined",
                state=AssignmentState.declined,
                decline_reason=reason,
                details={"reason": reason},
            )
            return
        due_at = world.due(answered, kp.review_days, kp)
        self.gen += 1  # the respond-by timers are done with; review-due ones follow
        self._record(
            answered,
            "accepted",
            "invitation_accepted",
            state=AssignmentState.accepted,
            due_at=due_at,
        )
        start = answered
        late = rng.random() < habit.late or (last_hope and rng.random() < 0.3)
        if late and rng.random() < 0.4:
            # The expert asks for more time; the office extends around the due date.
            asked = world.later(due_at, rng.randint(-2, 3), rng)
            if asked > start:
                self._watch("review", start, due_at, asked)
                days = rng.choice([5, 7, 10])
                new_due = world.due(max(due_at, asked), days, kp)
                step = f"extended-{self.gen}"
                self.gen += 1
                self._record(
                    asked,
                    step,
                    "deadline_extended",
                    actor=life.office_ref(rng),
                    due_at=new_due,
                    extensions=self.view.extensions + 1,
                    extension_days=self.view.extension_days + days,
                    clear_overdue=True,
                    details={
                        "deadline": "review",
                        "from": due_at.isoformat(),
                        "to": new_due.isoformat(),
                        "days": days,
                        "reason": EXTENSION_REASONS["expert"],
                    },
                )
                self.extended = True
                start, due_at = asked, new_due
                late = rng.random() < 0.3
        days_given = max(1, life.working_days(start, due_at))
        if late:
            after = days_given + rng.choice([1, 2, 3, 4, 6, 9, 12])
        else:
            after = rng.randint(max(1, days_given * 2 // 5), days_given)
        submitted = world.later(start, after, rng)
        self._watch("review", start, due_at, submitted)
        rec = _pick(
            rng,
            {
                Recommendation.endorse: 0.25,
                Recommendation.endorse_with_changes: 0.6,
                Recommendation.do_not_endorse: 0.15,
            },
        )
        summary, comments = OPINIONS[rec]
        self._record(
            submitted,
            "submitted",
            "opinion_submitted",
            state=AssignmentState.submitted,
            recommendation=rec,
            details={"recommendation": rec.value},
            opinion=OpinionRecord(
                expert_code=self.code,
                opinion=OpinionInput(
                    recommendation=rec, summary=summary, comments_for_agency=comments
                ),
            ),
        )


def _weighted(rng: random.Random, weights: list[int]) -> int:
    """An index drawn with these weights: 0 the most usual."""
    return rng.choices(range(len(weights)), weights=weights)[0]


# --- one request ----------------------------------------------------------------------------------


class _Life:
    """One request, as `ReviewRequestWorkflow` records it: the state its steps are named
    and its rows written from (stage, its deadline and generation, the overdue flag, the
    counters of repeatable steps), and what the people in it decide."""

    def __init__(self, world: World, arrival: Arrival, no_experts: bool = False) -> None:
        self.world, self.arrival, self.no_experts = world, arrival, no_experts
        self.rid, self.submission = arrival.request_id, arrival.submission
        self.rng = random.Random(f"{world.seed}:{self.rid}")
        self.kp = world.policy.for_kind(self.submission.kind)
        self.wf = review_workflow_id(self.rid)
        self.agency = f"agency:{self.submission.agency.code}"
        self.out: list[TransitionInput] = []
        self.stage = Stage.intake
        self.gen = 0
        self.deadline: datetime | None = None
        self.overdue = False
        self.counters: Counter[str] = Counter()
        self.round = 0
        self.version = 1
        self.conclusion: ConclusionView | None = None
        self.seats: list[_Seat] = []
        self.alternates: list[CouncilCandidate] = []
        self.outcome = ""
        self.adoption: str | None = None
        # The stage in which the agency withdraws the request, if it does.
        self.withdraw_in: Stage | None = None
        if self.rng.random() < 0.09:
            self.withdraw_in = _pick(
                self.rng,
                {
                    Stage.screening: 0.25,
                    Stage.supplement: 0.15,
                    Stage.review: 0.4,
                    Stage.synthesis: 0.12,
                    Stage.approval: 0.08,
                },
            )

    # --- people and days ---

    def office_ref(self, rng: random.Random) -> str:
        return f"coordinator:{rng.choice(self.world.office).code}"

    def working_days(self, start: datetime, end: datetime) -> int:
        cal = self.world.cal
        return cal.working_days_between(cal.local_date(start), cal.local_date(end))

    def plan_of(self, name: str, start: datetime, due: datetime) -> list[tuple[datetime, str, int]]:
        """The deadline's reminder plan as `DeadlineWatch` makes it when the deadline is set."""
        s = getattr(self.kp.reminders, name)
        return self.world.cal.reminder_plan(
            start,
            due,
            before=s.before,
            overdue_every=s.overdue_every,
            grace=s.grace,
            mode=self.kp.calendar,
            hour=self.world.policy.calendar.reminder_hour,
        )

    def escalation(self) -> datetime:
        """When the current stage's deadline escalates (a supplement lapses)."""
        assert self.deadline is not None
        grace = getattr(self.kp.reminders, DEADLINES[self.stage]).grace
        return self.deadline if grace == 0 else self.world.due(self.deadline, grace, self.kp)

    # --- recording, as workflows/review/transitions.py does ---

    def _persist(
        self,
        at: datetime,
        step: str,
        action: str,
        *,
        actor: str = "system",
        stage: Stage | None = None,
        details: dict | None = None,
        **fields: Any,
    ) -> None:
        fields.setdefault("next_deadline", self.deadline)
        self.out.append(
            TransitionInput(
                workflow_id=self.wf,
                request_id=self.rid,
                step=step,
                at=at,
                actor=actor,
                action=action,
                stage=stage,
                details=details or {},
                **fields,
            )
        )

    def _move(
        self,
        at: datetime,
        step: str,
        action: str,
        stage: Stage,
        *,
        days: int | None = None,
        actor: str = "system",
        details: dict | None = None,
        **records: Any,
    ) -> None:
        """As `Transitions._transition`: to `stage` (or a step within it), with the stage's
        new deadline `days` from now."""
        moving = stage != self.stage or days is not None
        deadline = self.world.due(at, days, self.kp) if days else None
        self._persist(
            at,
            step,
            action,
            actor=actor,
            stage=stage,
            next_deadline=deadline if moving else self.deadline,
            details=details,
            overdue=False if moving and self.overdue else None,
            **records,
        )
        self.stage = stage
        if moving:
            self.gen += 1
            self.deadline, self.overdue = deadline, False

    def _watch(self, start: datetime, until: datetime) -> None:
        """The stage deadline's reminders and escalation from `start` (when it was set) to
        `until` (when it was met, moved or ended), as `Transitions._on_deadline` records them.
        A supplement lapses at its escalation instead (the caller's)."""
        name = DEADLINES.get(self.stage)
        if name is None or self.deadline is None:
            return
        who = {"screening", "approval", "supplement", "adoption", "synthesis"}
        for at, kind, n in self.plan_of(name, start, self.deadline):
            if at >= until:
                return
            if kind in ("before", "overdue") and name in who:
                self._persist(
                    at,
                    f"remind-{name}-g{self.gen}-{kind}-{n}",
                    "reminder_sent",
                    details={"deadline": name, "when": kind, "days": n},
                )
            elif kind == "escalate" and name != "supplement":
                self._persist(
                    at,
                    f"escalated-{name}-g{self.gen}",
                    "deadline_escalated",
                    overdue=True,
                    details={"deadline": name, "grace_days": n},
                )
                self.overdue = True

    def _extend(self, at: datetime, days: int, reason: str) -> bool:
        """As `Transitions._extend_stage`, granted by the office; False when the policy's
        bounds refuse it."""
        name, stage = DEADLINES[self.stage], self.stage.value
        try:
            check_extension_bounds(
                self.kp,
                name,
                self.counters[f"extensions:{stage}"],
                self.counters[f"extension-days:{stage}"],
                days,
            )
        except Refused:
            return False
        old = self.deadline
        assert old is not None
        new = self.world.due(max(old, at), days, self.kp)
        self.counters["extended"] += 1
        self._persist(
            at,
            f"extended-{self.counters['extended']}",
            "deadline_extended",
            actor=self.office_ref(self.rng),
            stage=self.stage,
            next_deadline=new,
            overdue=False if self.overdue else None,
            details={
                "deadline": name,
                "from": old.isoformat(),
                "to": new.isoformat(),
                "days": days,
                "reason": reason,
            },
        )
        self.deadline, self.overdue = new, False
        self.counters[f"extensions:{stage}"] += 1
        self.counters[f"extension-days:{stage}"] += days
        self.gen += 1
        return True

    def _withdrawal(self, start: datetime, end: datetime) -> datetime | None:
        """When the agency withdraws during this visit of the stage (before `end`), if this
        is where it withdraws."""
        if self.withdraw_in != self.stage:
            return None
        self.withdraw_in = None  # once
        span = max(0, self.working_days(start, end))
        at = self.world.later(start, self.rng.randint(0, span), self.rng)
        return at if at < end else None

    def _reaches(self, start: datetime, end: datetime) -> bool:
        """Whether the stage, entered at `start`, lasts until `end`: false when the agency
        withdraws first (then withdrawn). Either way the stage's reminders and escalations up
        to then are planned."""
        if (w := self._withdrawal(start, end)) is not None:
            self._watch(start, w)
            self._withdraw(w)
            return False
        self._watch(start, end)
        return True

    def _withdraw(self, at: datetime) -> None:
        """As the `withdraw` update: every open assignment cancelled first, then withdrawn."""
        still_open = [s for s in self.seats if s.state.is_open]
        for i, s in enumerate(still_open):
            self.out.append(s.cancel(at + i * TICK))
        self._move(
            at + len(still_open) * TICK,
            "withdrawn",
            "withdrawn",
            Stage.withdrawn,
            actor=self.agency,
            details={
                "reason": self.rng.choice(WITHDRAWALS),
                "cancelled_assignments": len(still_open),
            },
        )
        self.outcome = "withdrawn"

    # --- the life ---

    def live(self) -> PastRequest:
        s, kp, at = self.submission, self.kp, self.arrival.at
        self._move(
            at,
            "intake",
            "submitted",
            Stage.screening,
            days=kp.screening_days,
            actor=self.agency,
            details={
                "agency_reference": s.agency_reference,
                "kind": s.kind.value,
                "expertise_fields": s.expertise_fields,
            },
            intake=IntakeRecord(
                submission=s,
                submitted_at=at,
                council_size=kp.council_size,
                alternates=kp.alternates,
                review_window_days=kp.respond_days + kp.review_days,
            ),
        )
        step = self._screening
        while step is not None:
            step = step(self.out[-1].at)
        # Transitions in the order they happened (each step's follow-ons come after it).
        self.out.sort(key=lambda t: t.at)
        return PastRequest(
            request_id=self.rid,
            kind=s.kind,
            agency_code=s.agency.code,
            submitted_at=at,
            outcome=self.outcome,
            adoption=self.adoption,
            transitions=self.out,
        )

    def _screening(self, start: datetime):
        rng, kp, world = self.rng, self.kp, self.world
        n = kp.screening_days
        days = rng.randint(1, n) if rng.random() < 0.9 else n + rng.randint(1, 5)
        decided = world.later(start, days, rng)
        if not self._reaches(start, decided):
            return None
        step = f"screened-{self.round}"
        by = self.office_ref(rng)
        roll = rng.random()
        accept, supplement = (0.74, 0.18) if self.round == 0 else (0.86, 0.06)
        if roll < accept and not self.no_experts:
            self._move(
                decided, step, "screening_accepted", Stage.council, actor=by, details={"note": ""}
            )
            return self._council
        if accept <= roll < accept + supplement:
            self._move(
                decided,
                step,
                "supplement_requested",
                Stage.supplement,
                actor=by,
                days=kp.supplement_days,
                details={"note": rng.choice(SUPPLEMENT_NOTES)},
            )
            return self._supplement
        reason = NO_EXPERTS if roll < accept else rng.choice(SCREENING_DECLINES)
        self._move(
            decided,
            step,
            "screening_declined",
            Stage.declined,
            actor=by,
            details={"reason": reason},
        )
        self.outcome = "declined"
        return None

    def _supplement(self, start: datetime):
        rng, kp, world = self.rng, self.kp, self.world
        assert self.deadline is not None
        if rng.random() < 0.15:
            asked = world.later(start, max(1, kp.supplement_days - rng.randint(1, 3)), rng)
            if asked < self.deadline:
                self._watch(start, asked)
                if self._extend(asked, rng.choice([5, 7, 10]), EXTENSION_REASONS["supplement"]):
                    start = asked
        roll, given = rng.random(), max(1, self.working_days(start, self.deadline))
        lapse = self.escalation()
        if roll < 0.76:
            sent = world.later(start, rng.randint(1, given), rng)
        elif roll < 0.88:
            sent = world.later(start, given + rng.randint(1, 4), rng)
        else:
            sent = None
        if sent is not None and sent >= lapse:
            sent = None
        end = sent or lapse
        if not self._reaches(start, end):
            return None
        if sent is None:
            self._move(
                lapse, "lapsed", "supplement_lapsed", Stage.closed, details={"reason": LAPSE_REASON}
            )
            self.outcome = "lapsed"
            return None
        code = self.submission.agency.code
        docs = [_document(code, self.rid, "Tài liệu bổ sung.pdf", "bo-sung", self.round + 1)]
        self._move(
            sent,
            f"supplemented-{self.round}",
            "supplemented",
            Stage.screening,
            days=kp.screening_days,
            actor=self.agency,
            details={"note": rng.choice(SUPPLEMENT_SENT), "documents": [d.name for d in docs]},
            documents_added=docs,
        )
        self.round += 1
        return self._screening

    def _council(self, start: datetime):
        world, kp = self.world, self.kp
        at = start + timedelta(seconds=1)
        req = world.match_request(self, at)
        candidates = [world.candidate(e, req, at) for e in self.world.reg.experts]
        proposal = propose_councils([req], candidates)[self.rid]
        if len(proposal.members) < kp.quorum:
            raise _NoCouncil(self.rid)
        self._move(
            at,
            "council-proposed",
            "council_proposed",
            Stage.council,
            details=council_details(proposal),
        )
        self.alternates = list(proposal.alternates)
        if kp.council_confirmation == "coordinator":
            confirmed = world.later(at, self.rng.choice([0, 0, 1, 2]), self.rng)
            self._move(
                confirmed,
                "council-confirmed",
                "council_confirmed",
                Stage.council,
                actor=self.office_ref(self.rng),
                details=council_details(proposal),
                council_confirmed=True,
            )
            at = confirmed
        for i, m in enumerate(proposal.members, start=1):
            self._invite(m, m.role, at + i * timedelta(seconds=1))
        opened = at + (len(proposal.members) + 1) * timedelta(seconds=1)
        self._move(
            opened,
            "review-open",
            "review_opened",
            Stage.review,
            days=kp.respond_days + kp.review_days,
        )
        return self._review

    def _invite(self, candidate: CouncilCandidate, role: Role, at: datetime) -> _Seat:
        self.alternates = [a for a in self.alternates if a.expert_code != candidate.expert_code]
        seat = _Seat(self, candidate, role, at)
        self.seats.append(seat)
        self.out.append(seat.take())  # the invitation
        return seat

    def _next_alternate(self, at: datetime) -> CouncilCandidate | None:
        """As `Transitions._next_alternate`: the next ranked alternate who still passes the
        hard rules now (their load may have filled since the proposal)."""
        world = self.world
        on_request = frozenset(s.code for s in self.seats)
        while self.alternates:
            candidate = self.alternates.pop(0)
            if candidate.expert_code in on_request:
                continue
            e = world.experts[candidate.expert_code]
            req = world.match_request(self, at, previous=on_request)
            if exclusion(req, world.candidate(e, req, at)) is None:
                return candidate
        return None

    # --- review: the seats' transitions and the request's steps, in time order ---

    def _chair(self) -> _Seat | None:
        return next(
            (
                s
                for s in self.seats
                if s.role == Role.chair
                and (s.state.is_open or s.state == AssignmentState.submitted)
            ),
            None,
        )

    def _submitted(self) -> int:
        return sum(1 for s in self.seats if s.state == AssignmentState.submitted)

    def _review(self, start: datetime):
        rng, kp, world = self.rng, self.kp, self.world
        queue: list[tuple[datetime, int, str, Any]] = []
        order = iter(range(1_000_000))

        def push(at: datetime, what: str, data: Any = None) -> None:
            heapq.heappush(queue, (at, next(order), what, data))

        def push_seat(seat: _Seat) -> None:
            if (at := seat.next_at()) is not None:
                push(at, "seat", seat)

        def push_deadline() -> None:
            assert self.deadline is not None
            push(self.deadline, "due", self.gen)
            push(self.escalation(), "escalate", self.gen)

        for seat in self.seats:
            push_seat(seat)
        push_deadline()
        if rng.random() < 0.1:
            # The council asks for more time, a couple of days before its deadline.
            assert self.deadline is not None
            push(world.later(self.deadline, -rng.randint(1, 3), rng), "extend")
        if self.withdraw_in == Stage.review:
            w = self._withdrawal(start, world.due(start, kp.respond_days + kp.review_days, kp))
            if w is not None:
                push(w, "withdraw")
        due_passed = closed = asked = False
        filled: set[str] = set()
        while queue:
            at, _, what, data = heapq.heappop(queue)
            if what == "seat":
                seat: _Seat = data
                if seat.next_at() != at:
                    continue  # cut short since
                t = seat.take()
                self.out.append(t)
                push_seat(seat)
                if (
                    t.action == "review_overdue"
                    and not seat.extended
                    and self.alternates
                    and rng.random() < 0.35
                ):
                    push(world.later(at, rng.randint(1, 3), rng), "replace", seat)
            elif what == "due" and data == self.gen:
                due_passed = True
            elif what == "escalate" and data == self.gen:
                self._persist(
                    at,
                    f"escalated-review-g{self.gen}",
                    "deadline_escalated",
                    overdue=True,
                    details={"deadline": "review", "grace_days": self.kp.reminders.review.grace},
                )
                self.overdue = True
            elif what == "extend":
                if closed or self._submitted() >= kp.council_size:
                    continue
                if self._extend(at, rng.choice([5, 10]), EXTENSION_REASONS["review"]):
                    due_passed = False
                    push_deadline()
            elif what == "withdraw":
                self._withdraw(at)
                return None
            elif what == "replace":
                seat = data
                if closed or not seat.state.is_open:
                    continue
                alternate = self._next_alternate(at)
                if alternate is None:
                    continue
                self.out.append(seat.cancel(at))
                new = self._invite(alternate, seat.role, at + TICK)
                push_seat(new)
                self.counters["replaced"] += 1
                self._move(
                    at + 2 * TICK,
                    f"replaced-{self.counters['replaced']}",
                    "expert_replaced",
                    Stage.review,
                    actor=self.office_ref(rng),
                    details={
                        "expert_code": seat.code,
                        "replacement": alternate.expert_code,
                        "reason": REPLACEMENT_REASON,
                    },
                )
                asked = False
            else:
                continue
            # The run loop's automatic steps (workflows/review/steps.py), in its order.
            tick = at
            while True:
                tick += TICK
                chair = self._chair()
                chair_in = chair is not None and chair.state == AssignmentState.submitted
                open_seats = [s for s in self.seats if s.state.is_open]
                vacancies = [
                    s
                    for s in self.seats
                    if s.state in (AssignmentState.declined, AssignmentState.expired)
                    and s.code not in filled
                ]
                if closed or (not open_seats and self._submitted() >= kp.council_size and chair_in):
                    self._move(
                        tick,
                        f"synthesis-{self.version}",
                        "synthesis_opened",
                        Stage.synthesis,
                        days=kp.synthesis_days,
                        details={"chair": chair.code, "opinions": self._submitted()},
                    )
                    return self._synthesis
                if vacancies:
                    filled.add(vacancies[0].code)
                    alternate = self._next_alternate(tick)
                    if alternate is not None:
                        push_seat(self._invite(alternate, vacancies[0].role, tick))
                        asked = False
                    continue
                if due_passed and self._submitted() >= kp.quorum and chair_in:
                    closed = True
                    for s in open_seats:
                        self.out.append(s.cancel(tick))
                        tick += TICK
                    self._move(
                        tick,
                        "quorum-reached",
                        "quorum_reached",
                        Stage.review,
                        details={
                            "opinions": self._submitted(),
                            "quorum": kp.quorum,
                            "cancelled": [s.code for s in open_seats],
                        },
                    )
                    continue
                if not open_seats and not asked:
                    asked = True
                    self.counters["experts-needed"] += 1
                    self._move(
                        tick,
                        f"experts-needed-{self.counters['experts-needed']}",
                        "experts_needed",
                        Stage.review,
                        details={
                            "submitted": self._submitted(),
                            "needed": kp.council_size,
                            "has_chair": chair is not None,
                        },
                    )
                    continue
                break
        raise _NoCouncil(self.rid)  # nobody left to give the quorum

    def _synthesis(self, start: datetime):
        rng, kp, world = self.rng, self.kp, self.world
        chair = self._chair()
        assert chair is not None and self.deadline is not None
        if rng.random() < 0.1:
            asked = world.later(self.deadline, -1, rng)
            if start < asked < self.deadline:
                self._watch(start, asked)
                if self._extend(asked, rng.choice([3, 5]), EXTENSION_REASONS["synthesis"]):
                    start = asked
        given = max(1, self.working_days(start, self.deadline))
        late = HABITS[world.habits.get(chair.code, "reliable")].late / 2
        if self.version > 1:
            days = rng.randint(1, max(1, given // 2))
        elif rng.random() < late:
            days = given + rng.randint(1, 5)
        else:
            days = rng.randint(max(1, given // 3), given)
        drafted = world.later(start, days, rng)
        if not self._reaches(start, drafted):
            return None
        opinions = Counter(
            s.current.recommendation
            for s in self.seats
            if s.state == AssignmentState.submitted and s.current.recommendation
        )
        rec = opinions.most_common(1)[0][0] if opinions else Recommendation.endorse_with_changes
        self.conclusion = ConclusionView(
            version=self.version, recommendation=rec, text=CONCLUSIONS[rec], drafted_by=chair.code
        )
        self._move(
            drafted,
            f"drafted-{self.version}",
            "conclusion_drafted",
            Stage.approval,
            days=kp.approval_days,
            actor=f"expert:{chair.code}",
            details={"version": self.version, "recommendation": rec.value},
            conclusion=conclusion_record(self.conclusion),
        )
        return self._approval

    def _approval(self, start: datetime):
        rng, kp, world = self.rng, self.kp, self.world
        n = kp.approval_days
        days = rng.randint(0, n) if rng.random() < 0.93 else n + rng.randint(1, 3)
        decided = world.later(start, days, rng)
        if not self._reaches(start, decided):
            return None
        signer = rng.choice(world.signers)
        v, conclusion = self.version, self.conclusion
        assert conclusion is not None
        if rng.random() < {1: 0.2, 2: 0.06}.get(v, 0.0):
            comments = rng.choice(RETURN_COMMENTS)
            self.conclusion = conclusion.model_copy(update={"returned_comments": comments})
            self._move(
                decided,
                f"returned-{v}",
                "conclusion_returned",
                Stage.synthesis,
                days=kp.synthesis_days,
                actor=f"coordinator:{signer.code}",
                details={"version": v, "comments": comments},
                conclusion=conclusion_record(self.conclusion),
            )
            self.version += 1
            return self._synthesis
        self.conclusion = conclusion.model_copy(
            update={"approved_by": signer.name, "approver_title": signer.title}
        )
        self._move(
            decided,
            f"approved-{v}",
            "conclusion_approved",
            Stage.delivered,
            actor=f"coordinator:{signer.code}",
            details={"version": v, "approved_by": signer.name},
            conclusion=conclusion_record(self.conclusion),
        )
        self._move(
            decided + timedelta(seconds=1),
            "adoption-open",
            "adoption_answer_requested",
            Stage.adoption,
            days=kp.adoption_days,
        )
        return self._adoption

    def _adoption(self, start: datetime):
        rng, world = self.rng, self.world
        assert self.deadline is not None
        if rng.random() < 0.06:
            asked = world.later(self.deadline, -rng.randint(1, 5), rng)
            if start < asked < self.deadline:
                self._watch(start, asked)
                if self._extend(asked, rng.choice([10, 15]), EXTENSION_REASONS["adoption"]):
                    start = asked
        given = max(1, self.working_days(start, self.deadline))
        if rng.random() < 0.85:
            days = rng.randint(max(1, given // 6), given)
        else:
            # No answer by the deadline: it comes after the reminders, often past escalation.
            days = given + rng.randint(2, 30)
        answered = world.later(start, days, rng)
        self._watch(start, answered)
        status = _pick(rng, ADOPTION_SHARE)
        self._move(
            answered,
            "closed",
            "adoption_answered",
            Stage.closed,
            actor=self.agency,
            details={"status": status.value},
            adoption=AdoptionAnswer(
                status=status,
                explanation=ADOPTION_ANSWERS[status],
                answered_by=self.submission.requested_by,
            ),
        )
        self.outcome, self.adoption = "closed", status.value
        return None


# --- the whole past -------------------------------------------------------------------------------


@dataclass
class HistoryPlan:
    start: date
    requests: list[PastRequest] = field(default_factory=list)
    unfinished: int = 0  # arrived in the span, still running now: left out
    no_experts: int = 0  # declined at screening: too few experts free for a council


def plan_history(
    seed: int, start: date, now: datetime, reg: Registries, policy: Policy, cal: WorkingCalendar
) -> HistoryPlan:
    """Every request of the span from `start` to `now` that had ended by `now`, with its
    transitions: none after `now`."""
    world = World(seed, reg, policy, cal)
    plan = HistoryPlan(start=start)
    day, today = start, cal.local_date(now)
    while day <= today:
        for arrival in world.arrivals(day):
            if arrival.at >= now:
                continue
            life = _Life(world, arrival)
            try:
                past = life.live()
            except _NoCouncil:
                plan.no_experts += 1
                life = _Life(world, arrival, no_experts=True)
                past = life.live()
            for seat in life.seats:
                world.loads.spans[seat.code].append((seat.first.invited_at, seat.closed_at()))
            if past.ended_at <= now:
                plan.requests.append(past)
            else:
                plan.unfinished += 1
        day += timedelta(days=1)
    return plan
