"""Log lines are JSON with the workflow and request they belong to, from workflows (Temporal's
logger) and activities (structlog) alike, and carry no one's name or address."""

from __future__ import annotations

import io
import json
import logging

from domain.models import Stage
from infra.logging import configure_logging
from starter import service
from tests import factories as f
from tests.test_lifecycle import until


async def test_lines_name_their_workflow_and_request_and_no_person(env, worker, policy, registry):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    try:
        await registry.add(3)
        sub = f.submission(registry.field)
        rid = (
            await service.submit(
                env.client, registry.pool, sub, policy, task_queue=worker.task_queue
            )
        ).request_id
        await until(lambda s: s.stage == Stage.screening, service.request_handle(env.client, rid))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = [ln for ln in lines if ln.get("request_id") == rid]
    recorded = [ln for ln in mine if ln["event"] == "transition recorded"]
    assert {ln["action"] for ln in recorded} >= {"submitted"}
    for ln in recorded:
        assert ln["workflow_id"] == f"review-{rid}" and ln["activity_type"] == "record_transition"
        assert ln["level"] == "info" and "timestamp" in ln
    [moved] = [ln for ln in mine if ln["event"] == "stage changed" and ln["stage"] == "screening"]
    assert moved["workflow_id"] == f"review-{rid}"
    assert moved["workflow_type"] == "ReviewRequestWorkflow"
    assert moved["logger"] == "temporalio.workflow"
    text = out.getvalue()
    assert sub.requested_by.email not in text and sub.requested_by.name not in text
