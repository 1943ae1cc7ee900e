"""Business ids and the one task queue. Ids carry request and expert codes, never names."""

TASK_QUEUE = "advisory-review"


def review_workflow_id(request_id: str) -> str:
    return f"review-{request_id}"


def assignment_workflow_id(request_id: str, expert_code: str) -> str:
    return f"review-{request_id}-expert-{expert_code}"
