"""Business ids and the task queues. Ids carry request and expert codes, never names."""

from datetime import date

TASK_QUEUE = "advisory-review"


def notification_task_queue(task_queue: str) -> str:
    """Where notification deliveries run, beside a deployment's task queue: apart from the
    requests, so the operators' list of a queue (`TaskQueue = 'advisory-review'`) is the case
    board, not thousands of deliveries."""
    return f"{task_queue}-notifications"


def review_workflow_id(request_id: str) -> str:
    return f"review-{request_id}"


def assignment_workflow_id(request_id: str, expert_code: str) -> str:
    return f"review-{request_id}-expert-{expert_code}"


def notifications_workflow_id(request_id: str) -> str:
    """The delivery of every notification about one request (workflows/notification.py)."""
    return f"notifications-{request_id}"


# Requests of the generated past (`advisory demo --history`): never an `R-` id, which is what
# every submission gets (domain.models.request_id_for), and never run by a workflow.
HISTORY_PREFIX = "HIST-"


def history_request_id(seed: int, day: date, n: int) -> str:
    """The `n`th request of `day` in the past generated from `seed`: "HIST-1-20250314-02"."""
    return f"{HISTORY_PREFIX}{seed}-{day:%Y%m%d}-{n:02d}"


def is_history(request_id: str) -> bool:
    return request_id.startswith(HISTORY_PREFIX)
