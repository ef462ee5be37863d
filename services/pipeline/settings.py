"""Pipeline's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from baton_runtime.business_time import TimeZoneName
from baton_runtime.settings import FiscalYearStartMonth, Port, RuntimeSettings
from schemas.events import DealPhase
from services.pipeline.domain import OPEN_PHASES, PROBABILITY, PipelineRules

DEFAULT_LOST_REASONS = ("price", "competitor", "no_budget", "timing", "no_decision",
                        "requirements_not_met", "no_response", "other")


class PipelineSettings(RuntimeSettings):
    """Pipeline service settings: lost reasons, fiscal year, zombie and health thresholds."""

    http_port: Port = 8004
    pipeline_timezone: TimeZoneName = Field(
        default="Asia/Tokyo", description="Where 'today' is for holds, close dates and months.")
    fiscal_year_start_month: FiscalYearStartMonth = 4
    lost_reasons: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_LOST_REASONS, description="Comma-separated codes a lost deal may give.")
    zombie_no_phase_change_days: int = Field(default=90, ge=1, le=3650)
    zombie_no_next_action_days: int = Field(default=60, ge=1, le=3650)
    stuck_phase_days: int = Field(default=30, ge=1, le=3650)
    max_hold_days: int = Field(default=180, ge=1, le=3650)
    win_rate_lookback_days: int = Field(default=365, ge=1, le=3650)
    zombie_sweep_interval_seconds: float = Field(default=600.0, ge=0.05, le=86_400)
    zombie_sweep_batch_size: int = Field(default=1000, ge=1, le=50_000)
    phase_probabilities: Annotated[dict[DealPhase, int], NoDecode] = Field(
        default_factory=lambda: {phase: PROBABILITY[phase] for phase in OPEN_PHASES},
        description="Win probability in percent of each open phase, as "
                    "P1=10,P2=30,P3=60,P4=80,P5=90: never lower in a later phase. A won "
                    "deal counts 100, a lost or recycled one 0.")

    @field_validator("lost_reasons", mode="before")
    @classmethod
    def comma_separated(cls, value: object) -> object:
        """Return ``a,b,c`` as a tuple of trimmed, non-empty codes."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("lost_reasons")
    @classmethod
    def distinct_reasons(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Return the reasons if there is at least one and none repeats or is too long."""
        if not value:
            raise ValueError("give at least one lost reason")
        if len(set(value)) != len(value):
            raise ValueError("lost reasons must not repeat")
        if any(len(reason) > 100 for reason in value):
            raise ValueError("a lost reason has at most 100 characters")
        return value

    @field_validator("phase_probabilities", mode="before")
    @classmethod
    def phase_percentages(cls, value: object) -> object:
        """Return ``P1=10,P2=30,...`` as a mapping of phase to percent."""
        if not isinstance(value, str):
            return value
        percents: dict[str, int] = {}
        for part in filter(str.strip, value.split(",")):
            phase, equals, percent = (text.strip() for text in part.partition("="))
            if not equals or not percent.isdecimal():
                raise ValueError(f"{part.strip()!r}: write each phase as P1=10 (a whole "
                                 "percentage), comma-separated")
            if phase.upper() in percents:
                raise ValueError(f"{phase} is given twice")
            percents[phase.upper()] = int(percent)
        return percents

    @field_validator("phase_probabilities")
    @classmethod
    def every_open_phase_rising(cls, value: dict[DealPhase, int]) -> dict[DealPhase, int]:
        """Return the probabilities if every open phase has one, in 0..100, none lower than
        the phase's before."""
        if set(value) != set(OPEN_PHASES):
            raise ValueError("give P1, P2, P3, P4 and P5 each a probability, and no other "
                             "phase (won is 100, lost 0)")
        percents = [value[phase] for phase in OPEN_PHASES]
        if not all(0 <= percent <= 100 for percent in percents):
            raise ValueError("a probability is a percentage, 0 to 100")
        if percents != sorted(percents):
            raise ValueError("a later phase's probability must not be lower than an earlier's")
        return value

    def rules(self) -> PipelineRules:
        """Return the pipeline rules these settings describe."""
        return PipelineRules(
            timezone=ZoneInfo(self.pipeline_timezone),
            lost_reasons=self.lost_reasons,
            zombie_no_phase_change=timedelta(days=self.zombie_no_phase_change_days),
            zombie_no_next_action=timedelta(days=self.zombie_no_next_action_days),
            stuck_after=timedelta(days=self.stuck_phase_days),
            max_hold=timedelta(days=self.max_hold_days),
            win_rate_lookback=timedelta(days=self.win_rate_lookback_days),
            fiscal_year_start_month=self.fiscal_year_start_month,
            probabilities={**self.phase_probabilities, DealPhase.WON: 100, DealPhase.LOST: 0},
        )
