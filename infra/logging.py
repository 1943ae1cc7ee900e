"""structlog everywhere: JSON lines when not on a terminal, a readable console on one. The
standard library loggers (Temporal's `workflow.logger` and `activity.logger` among them) go
through the same processors, so every line has one shape."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import structlog
from temporalio import activity, workflow
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor


def request_id_of(workflow_id: str) -> str | None:
    """`review-<id>` and `review-<id>-expert-<code>` name their request; others do not."""
    if not workflow_id.startswith("review-"):
        return None
    return workflow_id.removeprefix("review-").split("-expert-")[0]


def temporal_context(_, __, event: dict) -> dict:
    """Flattens what Temporal's loggers attach (`temporal_workflow`, `temporal_activity`)
    into workflow_id, request_id, workflow_type / activity_type and attempt, the fields an
    operator filters on; the rest (run id, namespace, task queue) stays nested out of sight."""
    info = event.pop("temporal_workflow", None) or event.pop("temporal_activity", None)
    if isinstance(info, dict):
        for key in ("workflow_id", "workflow_type", "activity_type", "attempt"):
            if info.get(key) is not None:
                event.setdefault(key, info[key])
    wid = event.get("workflow_id")
    if isinstance(wid, str) and "request_id" not in event and (rid := request_id_of(wid)):
        event["request_id"] = rid
    return event


def configure_logging(
    fmt: str = "auto", level: str = "INFO", stream: IO[str] | None = None
) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        temporal_context,
    ]
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if use_json else lambda _, __, e: e,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The dev server's own chatter is not ours to show at INFO.
    logging.getLogger("temporalio.bridge").setLevel(logging.WARNING)
    # The workflow's and activity's identity arrive as fields (temporal_context), not glued
    # to the message text.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


class BindActivityContext(Interceptor):
    """Binds workflow_id, request_id and activity_type to every structlog line an activity
    writes, for the length of that activity (contextvars are per task)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Bound(next)


class _Bound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        fields = {"workflow_id": info.workflow_id, "activity_type": info.activity_type}
        if info.workflow_id and (rid := request_id_of(info.workflow_id)):
            fields["request_id"] = rid
        with structlog.contextvars.bound_contextvars(**fields):
            return await super().execute_activity(input)
