"""Scoring's settings."""

from __future__ import annotations

from pydantic import Field, FilePath, field_validator

from baton_runtime.settings import BatchSize, Lanes, PartitionFetchBytes, Port, RuntimeSettings
from services.scoring.model import (
    DEFAULT_MODEL_FILE,
    ModelError,
    ReasonLocale,
    ScoringModel,
    load_model,
)


class ScoringSettings(RuntimeSettings):
    """Scoring service settings."""

    http_port: Port = 8002
    # lead.captured is the stream with the most events: with several lanes a backlog is
    # scored in transactions that overlap (about 1.6x the events/s of one lane, bench.scoring).
    consumer_lanes: Lanes = 4
    # A batch pays its round trips and commit once, and a lead's touchpoints in one batch
    # are scored once: with 1,000 events a batch instead of 500, bench.scoring scored
    # about 18% more events a second.
    consumer_batch_size: BatchSize = 1_000
    # A lane's batch takes about a fetch's worth of one partition, so with 1 MiB fetches a
    # backlog's partitions drained every few batches and waited on the others' fetches:
    # with 4 MiB, bench.scoring scored about 17% more events a second (31% with 30,000).
    kafka_max_partition_fetch_bytes: PartitionFetchBytes = 4 * 1024 * 1024
    scoring_model_file: FilePath | None = Field(
        default=None, description="YAML scoring model; unset means the packaged model.yaml.")
    scoring_sweep_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    scoring_sweep_batch_size: BatchSize = 500
    scoring_reason_locale: ReasonLocale = Field(
        default="ja", description="The language of the reasons new scores give (their "
                                  "labels; codes stay the same): ja or en. Alerts show them.")

    @field_validator("scoring_model_file")
    @classmethod
    def valid_model(cls, path: FilePath | None) -> FilePath | None:
        """Return the path if it holds a valid scoring model (fail at start-up otherwise)."""
        if path is not None:
            try:
                load_model(path)
            except ModelError as error:
                raise ValueError(str(error)) from None
        return path

    def scoring_model(self) -> ScoringModel:
        """Return the configured scoring model."""
        return load_model(self.scoring_model_file or DEFAULT_MODEL_FILE)
