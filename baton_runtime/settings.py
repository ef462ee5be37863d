"""Settings from ``BATON_`` environment variables, validated once at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Self, TypeVar

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BATON_"
# The bounds of settings a service may give a default of its own: its override names the
# type and the value, and the bounds stay in one place.
Port = Annotated[int, Field(ge=1, le=65535)]
BatchSize = Annotated[int, Field(ge=1, le=10_000)]
Lanes = Annotated[int, Field(ge=1, le=8)]
# The month a fiscal year starts in (April in Japan): quarters and fiscal years follow it.
FiscalYearStartMonth = Annotated[int, Field(ge=1, le=12)]
PartitionFetchBytes = Annotated[int, Field(ge=64 * 1024, le=64 * 1024 * 1024)]


class SettingsError(Exception):
    """Start-up configuration is invalid; the message names every bad variable."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid configuration: " + "; ".join(problems))
        self.problems = tuple(problems)  # each names its variable and what is wrong


class BatonSettings(BaseSettings):
    """Base of every settings class: ``BATON_`` variables, empty meaning unset."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True
    )


class DatabaseSettings(BatonSettings):
    """Where the database is: all that migrations need."""

    database_url: str = Field(
        pattern=r"^postgresql(\+asyncpg)?://",
        description="PostgreSQL URL, e.g. postgresql://user:pass@host:5432/baton",
    )


class KafkaSettings(BatonSettings):
    """Where the broker is and how topics and consumer groups behave."""

    kafka_bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_idempotent_producer: bool = True
    kafka_topic_partitions: int = Field(default=6, ge=1, le=1000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    kafka_rebalance_timeout_ms: int = Field(default=30_000, ge=1_000)
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0, le=10_000)
    kafka_max_partition_fetch_bytes: PartitionFetchBytes = Field(
        default=1024 * 1024,
        description="The most a consumer fetches from one partition at a time. aiokafka "
                    "sends a broker no fetch while records it fetched from any partition "
                    "there in the last 100 ms are unconsumed, so a partition drained early "
                    "can wait that long: larger fetches drain less often.")

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> Self:
        """Return these settings if a member heartbeats more often than its session lasts."""
        # Otherwise the broker expires the member between two heartbeats and the group
        # rebalances over and over; aiokafka does not check it (Kafka's Java client does).
        if self.kafka_heartbeat_interval_ms >= self.kafka_session_timeout_ms:
            raise PydanticCustomError(
                "heartbeat_not_below_session",
                "{heartbeat} ({heartbeat_ms}) must be below {session} ({session_ms})",
                {"heartbeat": env_name("kafka_heartbeat_interval_ms"),
                 "heartbeat_ms": self.kafka_heartbeat_interval_ms,
                 "session": env_name("kafka_session_timeout_ms"),
                 "session_ms": self.kafka_session_timeout_ms})
        return self


class RuntimeSettings(DatabaseSettings, KafkaSettings):
    """What every service needs: database, broker, HTTP, consumer and outbox tuning."""

    http_host: str = "0.0.0.0"
    http_port: Port = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    consumer_batch_size: BatchSize = 500
    consumer_lanes: Lanes = Field(
        default=1,
        description="A consumer's partitions are lent to this many lanes, each handling "
                    "its batches in its own transaction: one waits for the database while "
                    "another computes. More lanes mean more, smaller transactions when events "
                    "are few, so the default is one (scoring's is four).")
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_retry_backoff_ms: int = Field(default=200, ge=0, le=60_000)
    outbox_batch_size: BatchSize = 500
    outbox_poll_interval_ms: int = Field(default=1_000, ge=10, le=60_000)
    outbox_min_interval_ms: int = Field(
        default=10, ge=0, le=1_000,
        description="After a relay batch that published events, the next begins no sooner "
                    "than this: under load, the events committed meanwhile leave in one "
                    "batch instead of one batch a transaction. An idle relay publishes at "
                    "once.")
    shutdown_grace_seconds: float = Field(default=25.0, gt=0, le=600)


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def env_name(field: str) -> str:
    """Return the environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Return validated settings, or raise SettingsError naming each bad variable."""
    try:
        return settings_class()
    except ValidationError as error:
        problems = []
        for item in error.errors():
            if not item["loc"]:  # a check across variables: its message names them
                problems.append(item["msg"])
                continue
            detail = "is required but not set" if item["type"] == "missing" else item["msg"]
            # A validator's own message says what is wrong; pydantic's prefix adds nothing.
            if item["type"] == "value_error":
                detail = detail.removeprefix("Value error, ")
            problems.append(f"{env_name(str(item['loc'][0]))} {detail}")
        raise SettingsError(problems) from None
