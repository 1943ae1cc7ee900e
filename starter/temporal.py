"""One way to reach Temporal: `temporalio.envconfig` (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TLS, API key), the pydantic converter, and the dev stack's address when nothing is set."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"


async def connect() -> Client:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(**config, data_converter=pydantic_data_converter)
