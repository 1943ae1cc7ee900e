"""Business ids and the task queues. Ids carry request and expert codes, never names."""

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
