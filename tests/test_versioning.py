"""Rolling deploys: a worker of the previous release reads what the next release wrote. Messages
decoded by the engine's data converter (the real one, with encryption) ignore fields they do not
know, at the top and inside nested models; the same JSON as people's input is refused, naming
each unknown field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from domain.ids import review_workflow_id
from domain.messages import (
    IntakeRecord,
    ReviewRequestInput,
    ReviewState,
    ScreeningInput,
    TransitionInput,
)
from domain.models import CouncilCandidate, CouncilProposal, Model, Recipient, Stage
from domain.models import Notice as NoticeModel
from tests import factories as f
from tests.conftest import CONVERTER
from tests.test_lifecycle import until
from workflows.review import ReviewRequestWorkflow

AT = datetime(2027, 3, 1, 2, 30, tzinfo=UTC)


def request_input(policy) -> ReviewRequestInput:
    sub = f.submission("giao-thong")
    return ReviewRequestInput(
        request_id=sub.request_id(),
        submission=sub,
        policy=policy.for_kind(sub.kind),
        calendar=policy.calendar,
    )


def transition(policy) -> TransitionInput:
    sub = f.submission("giao-thong")
    return TransitionInput(
        workflow_id=review_workflow_id(sub.request_id()),
        request_id=sub.request_id(),
        step="intake",
        at=AT,
        actor="agency:SGTVT",
        action="submitted",
        stage=Stage.screening,
        intake=IntakeRecord(submission=sub, submitted_at=AT, council_size=3),
        notify=[NoticeModel(recipient=Recipient(kind="coordinator"), event="request_submitted")],
    )


def carry(policy) -> ReviewState:
    candidate = CouncilCandidate(
        expert_code="E-017",
        role="chair",
        matched_fields=["giao-thong"],
        active_load=1,
        load_limit=3,
        reason="matches giao-thong (level 4)",
    )
    return ReviewState(
        request_id="R-0123456789",
        kind="advisory",
        title="Dự thảo Đề án",
        agency_code="SGTVT",
        stage=Stage.council,
        council=CouncilProposal(members=[candidate], alternates=[]),
        council_status="proposed",
        alternates=[candidate],
        vacancies_filled=["E-001"],
        counters={"experts-needed": 1},
    )


# What a next release might add: a field at the top, and fields inside nested models.
CASES = [
    (
        request_input,
        {
            ("priority",): "urgent",
            ("submission", "agency", "parent_code"): "UBND-BG",
            ("submission", "documents", 0, "pages"): 42,
        },
    ),
    (
        transition,
        {
            ("trace_id",): "abc123",
            ("intake", "channel"): "portal",
            ("intake", "submission", "requested_by", "title"): "Phó Giám đốc",
            ("notify", 0, "recipient", "locale"): "vi-VN",
        },
    ),
    (
        carry,
        {
            ("workflow_version",): 3,
            ("sla_breached",): False,
            ("council", "members", 0, "availability"): "full",
            ("alternates", 0, "distance_km"): 12.5,
        },
    ),
]


def with_extras(model: Model, extras: dict[tuple, object]) -> dict:
    data = model.model_dump(mode="json")
    for path, value in extras.items():
        node = data
        for key in path[:-1]:
            node = node[key]
        assert path[-1] not in node
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("make, extras", CASES, ids=[make.__name__ for make, _ in CASES])
async def test_a_message_with_fields_from_a_newer_release_decodes(policy, make, extras):
    model = make(policy)
    # Encoded as a newer release would: its model has the extra fields, so the JSON does.
    payloads = await CONVERTER.encode([with_extras(model, extras)])
    assert payloads[0].metadata["encoding"] == b"binary/encrypted"
    [decoded] = await CONVERTER.decode(payloads, [type(model)])
    assert type(decoded) is type(model)
    assert decoded == model
    assert decoded.model_dump() == model.model_dump()


@pytest.mark.parametrize("make, extras", CASES, ids=[make.__name__ for make, _ in CASES])
def test_the_same_json_as_peoples_input_is_refused_naming_each_field(policy, make, extras):
    model = make(policy)
    data = with_extras(model, extras)
    for validate in (type(model).model_validate, type(model).model_validate_json):
        with pytest.raises(ValidationError) as refused:
            validate(data if validate.__name__ == "model_validate" else json.dumps(data))
        errors = refused.value.errors()
        assert {e["type"] for e in errors} == {"extra_forbidden"}
        assert {e["loc"] for e in errors} == set(extras)


def test_known_fields_still_validate_under_the_message_context():
    """Ignoring unknown fields loosens nothing else: a wrong value is still refused."""
    from infra.codec import MESSAGE_CONTEXT

    with pytest.raises(ValidationError) as refused:
        ScreeningInput.model_validate(
            {"decision": "maybe", "reviewed_twice": True}, context=MESSAGE_CONTEXT
        )
    assert [e["loc"] for e in refused.value.errors()] == [("decision",)]


async def test_a_worker_runs_a_request_a_newer_release_started(env, worker, policy, registry):
    """End to end through Temporal: the workflow input and an update carry fields this release
    does not know; the worker decodes both and the request moves on."""
    await registry.add(3)
    sub = f.submission(registry.field)
    inp = ReviewRequestInput(
        request_id=sub.request_id(),
        submission=sub,
        policy=policy.for_kind(sub.kind),
        calendar=policy.calendar,
    )
    handle = await env.client.start_workflow(
        "ReviewRequestWorkflow",
        with_extras(inp, {("priority",): "urgent", ("submission", "agency", "parent"): "UBND"}),
        id=review_workflow_id(inp.request_id),
        task_queue=worker.task_queue,
    )
    state = await until(lambda s: s.stage == Stage.screening, handle)
    assert state.agency_code == sub.agency.code
    await handle.execute_update(
        ReviewRequestWorkflow.screen,
        {"decision": "accept", "screened_via": "portal-v2", "actor": f.COORDINATOR.model_dump()},
    )
    state = await until(lambda s: s.stage == Stage.review and len(s.assignments) == 3, handle)
    assert state.request_id == inp.request_id
