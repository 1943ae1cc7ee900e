"""Sample inputs for tests: a valid request and opinion that a test changes what it needs of."""

from __future__ import annotations

import uuid

from domain.messages import AdoptionInput, DraftConclusionInput, SubmitOpinionInput
from domain.models import (
    Actor,
    AdoptionAnswer,
    ConclusionDraft,
    OpinionInput,
    Recommendation,
    RequestSubmission,
)

# A coordinator of config/coordinators.sample.csv (which the test database registers): who
# acts when a test screens, confirms, extends or signs.
COORDINATOR = Actor(
    role="coordinator", code="VP01", name="Nguyễn Thị Lan", title="Chánh Văn phòng Liên hiệp hội"
)


def submission(field: str, **changes) -> RequestSubmission:
    data = {
        "kind": "advisory",
        "title": "Dự thảo Đề án phát triển giao thông nông thôn tỉnh Bắc Giang",
        "summary": "Đề nghị tư vấn về phương án huy động vốn và tiêu chí lựa chọn tuyến đường.",
        "agency": {"code": "SGTVT", "name": "Sở Giao thông Vận tải"},
        "agency_reference": f"{uuid.uuid4().hex[:8]}/SGTVT-KH",
        "expertise_fields": [field],
        "documents": [
            {
                "name": "Dự thảo đề án.pdf",
                "uri": "https://vanban.example.gov.vn/sgtvt/de-an.pdf",
                "sha256": "ab" * 32,
            }
        ],
        "requested_by": {"name": "Trần Văn Khánh", "email": "khanh.tv@sgtvt.example.gov.vn"},
    }
    data.update(changes)
    return RequestSubmission.model_validate(data)


def opinion(code: str, rec: Recommendation = Recommendation.endorse_with_changes):
    return SubmitOpinionInput(
        expert_code=code,
        opinion=OpinionInput(
            recommendation=rec,
            summary="Cơ bản đồng ý với dự thảo.",
            comments_for_agency="Cần bổ sung đánh giá tác động môi trường.",
            confidential_note="Số liệu chương 3 chưa khớp với phụ lục.",
        ),
    )


def draft(code: str) -> DraftConclusionInput:
    return DraftConclusionInput(
        expert_code=code,
        draft=ConclusionDraft(
            recommendation=Recommendation.endorse_with_changes,
            text="Hội đồng thống nhất đồng ý với dự thảo, đề nghị bổ sung các nội dung sau.",
        ),
    )


def adoption() -> AdoptionInput:
    return AdoptionInput(
        answer=AdoptionAnswer(
            status="partially_adopted",
            explanation="Tiếp thu ý kiến về vốn; giữ nguyên tiêu chí tuyến.",
            answered_by={"name": "Trần Văn Khánh", "email": "khanh.tv@sgtvt.example.gov.vn"},
        )
    )
