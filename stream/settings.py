"""One typed, frozen settings object. Every environment variable Encore reads is named here.

Built through :func:`get_settings` (cached), never at import time, so tests and
commands can set the environment first.

>>> s = Settings(broker="127.0.0.1:9092,127.0.0.1:9093", topic_prefix="t1-")
>>> s.broker_urls
['kafka://127.0.0.1:9092', 'kafka://127.0.0.1:9093']
>>> s.topic_name("plays")
't1-plays'
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "ENCORE_"


class Settings(BaseSettings):
    """Encore's configuration; each field is read from ``ENCORE_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    environment: Literal["dev", "test", "prod"] = Field(
        "dev", description="prod refuses unsafe defaults (web bound to all interfaces)."
    )
    # --- Kafka
    broker: str = Field(
        "127.0.0.1:9092", description="Bootstrap servers, host:port[,host:port...]."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    app_id: str = Field("encore", description="Faust app id = Kafka consumer group.")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates test runs).")
    partitions: int = Field(8, ge=1, description="Partitions of the topics Encore creates.")
    replication_factor: int = Field(1, ge=1)
    # --- pipeline
    publish_interval_ms: int = Field(
        50, ge=1, description="How often dirty users' lists are refreshed (debounce window)."
    )
    rerank_after_seconds: float = Field(
        5.0,
        ge=0,
        description="After a quick list (the last list patched for new events), how long "
        "before the user's rows are ranked again in the background (when no user waits).",
    )
    max_event_bytes: int = Field(16 * 1024, ge=256)
    max_event_future_seconds: float = Field(
        300.0, ge=0, description="Events further ahead of the worker's clock are rejected."
    )
    dedupe_window: int = Field(
        1_000_000, ge=1, description="Recent event ids remembered to drop duplicates."
    )
    max_event_age_seconds: float = Field(
        30 * 86_400.0, ge=0, description="Older events are rejected (0 = any age, for backfills)."
    )
    unknown_items: Literal["accept", "reject"] = Field(
        "accept",
        description="reject: events for items the catalog never announced (or withdrew) are "
        "dead-lettered as unknown_item, once this worker has read the whole catalog.",
    )
    forgotten_users_max: int = Field(
        1_000_000,
        ge=1,
        description="Forgotten users remembered with their deletion time, so their old events "
        "are refused; past this the oldest deletion is no longer enforced.",
    )
    row_size: int = Field(10, ge=1, le=100, description="Items per row in published lists.")
    served_lists: int = Field(
        10_000, ge=0, description="Latest published lists kept in memory for the HTTP API."
    )
    seed: int = Field(0, description="Seed of the engine's random choices.")
    # --- experiments, Wrapped
    experiment_id: str = Field(
        "holdout-1",
        min_length=1,
        max_length=64,
        description="Salt of the stable user -> arm hash; published on every list.",
    )
    holdout_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of users in the holdout arm (non-personalised popularity lists).",
    )
    wrapped_months: int = Field(
        13, ge=1, le=120, description="Months of per-user listening counters kept for Wrapped."
    )
    wrapped_max_entries: int = Field(
        200, ge=1, description="Distinct items, artists, genres counted per user and month."
    )
    # --- worker
    data_dir: Path = Field(
        Path(".encore/data"), description="Worker state: checkpoints and Faust's data dir."
    )
    session_timeout_seconds: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="A worker that stops heartbeating (killed, hung) loses its partitions "
        "after this long; a restarted or surviving worker takes them over then.",
    )
    gc_full_collection_seconds: float = Field(
        600.0,
        ge=0,
        description="The worker freezes its long-lived objects out of Python's garbage "
        "collector every few seconds and runs a full collection this often (0: Python's "
        "default collector).",
    )
    worker_id: str | None = Field(
        None,
        description="Kafka static group membership (group.instance.id): a worker restarted "
        "under the same id gets its partitions back at once, without a rebalance.",
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="Where checkpoints are written (default: the data dir's checkpoints/). "
        "Workers of one consumer group share it: a partition's user state moves to its new "
        "owner through it.",
    )
    item_updates_interval_seconds: float = Field(
        1.0,
        gt=0,
        description="Seconds between this worker's item updates (popularity, co-occurrence, "
        "item factors learned from its users) published to the other workers.",
    )
    checkpoint_interval_seconds: float = Field(
        10.0,
        gt=0,
        description="Least seconds between checkpoints of the worker's state; a crash re-reads "
        "about this much input (more when checkpoint_max_cpu_share stretches it).",
    )
    checkpoint_max_cpu_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Largest share of one core that writing checkpoints may use on average: "
        "when pickling the state takes longer, checkpoints are spaced further apart.",
    )
    web_enabled: bool = True
    web_bind: str = Field("127.0.0.1", description="Interface the worker's HTTP server binds.")
    web_port: int = Field(6066, ge=0, le=65535)
    log_level: str = "info"
    # --- local broker tooling (encore kafka ...)
    kafka_version: str = "4.1.1"
    kafka_cache: Path = Field(
        Path.home() / ".cache" / "encore" / "kafka", description="Where Kafka jars are cached."
    )
    kafka_home: Path = Field(Path(".encore/kafka"), description="Local broker data and logs.")
    kafka_port: int = Field(9092, ge=0, le=65535, description="Local broker port (0 = any free).")
    kafka_heap: str = "-Xms256m -Xmx512m"

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.environment == "prod" and self.web_bind in ("0.0.0.0", "::"):  # noqa: S104
            raise ValueError(
                "ENCORE_WEB_BIND exposes the worker's web server on every interface; "
                "bind 127.0.0.1 and put a proxy in front of it"
            )
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"ENCORE_SECURITY_PROTOCOL={self.security_protocol} needs "
                "ENCORE_SASL_USERNAME and ENCORE_SASL_PASSWORD"
            )
        return self

    @property
    def bootstrap_servers(self) -> str:
        """For plain aiokafka clients: ``host:port,host:port``."""
        return ",".join(part.strip() for part in self.broker.split(",") if part.strip())

    @property
    def broker_urls(self) -> list[str]:
        """For Faust: ``kafka://host:port`` per bootstrap server."""
        return [f"kafka://{server}" for server in self.bootstrap_servers.split(",")]

    def topic_name(self, base: str) -> str:
        return f"{self.topic_prefix}{base}"

    def aiokafka_options(self) -> dict[str, Any]:
        """Connection options for plain aiokafka clients (admin, producers, consumers)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl.create_default_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None
            )
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
