"""One way to reach Temporal: `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TLS, API key), the pydantic converter with payload encryption (starter/codec.py), and the dev
stack's address when nothing is set."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from starter.codec import data_converter
from starter.settings import Settings, get_settings

DEFAULT_ADDRESS = "localhost:7233"


async def connect(settings: Settings | None = None) -> Client:
    settings = settings or get_settings()
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(
        **config, data_converter=data_converter(settings.resolve_payload_keys())
    )
