"""One way to reach Temporal, for the worker, the API and the CLI alike: the connection
settings (infra.settings.temporal_connection: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS and
mTLS files, API key, read by `temporalio.envconfig`; the dev stack's address when nothing is
set) and the pydantic converter with payload encryption (infra/codec.py)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from domain.ids import review_workflow_id
from infra.codec import data_converter
from infra.settings import Settings, get_settings, temporal_connection


async def connect(settings: Settings | None = None, runtime: Runtime | None = None) -> Client:
    """Raises infra.settings.TemporalSettingError for a connection setting that cannot be
    used, infra.codec.KeyError_ without payload keys."""
    settings = settings or get_settings()
    return await Client.connect(
        **temporal_connection(),
        data_converter=data_converter(settings.resolve_payload_keys()),
        runtime=runtime,
    )


def temporal_ui_url(settings: Settings, request_id: str) -> str:
    """The request's page in the Temporal UI (ADVISORY_TEMPORAL_UI_URL): its workflow in the
    namespace `connect` uses; the UI opens the latest run of that id."""
    namespace = temporal_connection().get("namespace") or "default"
    workflow_id = review_workflow_id(request_id)
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


def metrics_runtime(address: str | None) -> Runtime:
    """The worker's runtime: SDK metrics (workflow and activity task latencies, failures,
    slots, pollers...) served for Prometheus at http://<address>/metrics unless None, and the
    SDK core's own log lines forwarded to the `temporalio.core` logger, so they come out as
    structlog lines like every other."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            ),
            metrics=PrometheusConfig(
                bind_address=address, counters_total_suffix=True, durations_as_seconds=True
            )
            if address
            else None,
        )
    )
