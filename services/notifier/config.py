"""The notifier's YAML configuration (calendar, SLA table, channels) merged with its environment.

``BATON_NOTIFIER_CONFIG_FILE`` names the file; every section is optional::

    calendar: {timezone: Asia/Tokyo, hours: "09:00-18:00", holidays_country: JP,
               workdays: [mon, tue, wed, thu, fri],
               closed_days: ["12-29", "12-30", "12-31", "01-01", "01-02", "01-03"]}
    sla:                        # each: one of minutes / hours / days (wall clock)
      mql_acceptance: {business_hours: 1}     # or business_minutes / _hours / _days
      mql_fast_lane: {minutes: 5}             # demo or quote request
      first_touch: {business_days: 3}
      first_touch_surge: {business_days: 1}
      first_contact: {business_days: 1}       # an SQL's first contact logged
      owner_activity: {business_days: 10}
      first_meeting: {business_days: 2}       # the first meeting's record, from its time
    channels:
      teams:
        sdr:
          slack_webhook_url: https://hooks.slack.com/services/...
          email: [sdr@example.co.jp]
          lead: {slack_channel: "#sdr-leads"}   # escalations at 200%
      reps:
        rep-001: {slack_webhook_url: https://hooks.slack.com/services/...}
      manager: {slack_channel: "#sales-managers"}

A ``slack_channel`` is posted to by the bot (``BATON_SLACK_BOT_TOKEN``), ``email``
through ``BATON_SMTP_URL``. Whoever has no channel of their own hears through a
wider one: rep -> team -> default (``BATON_SLACK_WEBHOOK_URL``, ``BATON_SLACK_CHANNEL``,
``BATON_ALERT_EMAIL_TO``), team lead -> manager -> default; with nothing configured,
alerts print on the console.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from baton_runtime.business_time import (
    JAPANESE_YEAR_END,
    BusinessCalendar,
    HolidayCountry,
    TimeZoneName,
    month_days,
)
from services.notifier.domain import (
    ClockKind,
    Directory,
    Policy,
    SlaRule,
    SlaRules,
)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
ADDRESS = r"[^@\s,]+@[^@\s,]+"
EmailAddress = Annotated[str, Field(pattern=f"^{ADDRESS}$", max_length=320)]
SlackChannel = Annotated[str, Field(pattern=r"^[#@]?[\w.\-]{1,80}$")]
DestinationKind = Literal["slack_webhook", "slack_bot", "email", "console"]
CONSOLE = "console"


class Strict(BaseModel):
    """A configuration section: unknown keys are mistakes, reported at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DurationSpec(Strict):
    """An SLA duration: exactly one of wall-clock or business (working) time."""

    minutes: float | None = Field(default=None, gt=0)
    hours: float | None = Field(default=None, gt=0)
    days: float | None = Field(default=None, gt=0)
    business_minutes: float | None = Field(default=None, gt=0)
    business_hours: float | None = Field(default=None, gt=0)
    business_days: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def exactly_one(self) -> Self:
        """Return the duration if exactly one unit is given."""
        given = [name for name, value in self.model_dump().items() if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(type(self).model_fields)}"
                             f" (got {', '.join(given) or 'none'})")
        return self

    def rule(self, name: str, kind: ClockKind, calendar: BusinessCalendar) -> SlaRule:
        """Return the SLA rule this duration describes; a business day is one working day."""
        units = {"minutes": timedelta(minutes=1), "hours": timedelta(hours=1),
                 "days": timedelta(days=1), "business_minutes": timedelta(minutes=1),
                 "business_hours": timedelta(hours=1), "business_days": calendar.business_day}
        [(unit, amount)] = [(k, v) for k, v in self.model_dump().items() if v is not None]
        return SlaRule(name=name, kind=kind, duration=units[unit] * amount,
                       business=unit.startswith("business_"))


class CalendarSpec(Strict):
    """Working hours, time zone, working weekdays and holidays that business time counts."""

    timezone: TimeZoneName = "Asia/Tokyo"
    hours: str = Field(default="09:00-18:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    holidays_country: HolidayCountry = "JP"
    workdays: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")
    # MM-DD days closed every year besides public holidays; [] for none.
    closed_days: tuple[str, ...] = JAPANESE_YEAR_END

    @model_validator(mode="after")
    def buildable(self) -> Self:
        """Return the spec if it makes a calendar (sane hours, at least one workday)."""
        self.calendar()
        return self

    def calendar(self) -> BusinessCalendar:
        """Return the business calendar."""
        opens, closes = (time.fromisoformat(part) for part in self.hours.split("-"))
        return BusinessCalendar(timezone=self.timezone, opens=opens, closes=closes,
                                holidays=self.holidays_country,
                                closed_days=month_days(self.closed_days),
                                workdays=frozenset(WEEKDAYS.index(day) + 1
                                                   for day in self.workdays))


class SlaSpec(Strict):
    """The SLA table; DESIGN.md's '24 hours' and '48 hours' are working days here.

    The first meeting's clock starts at the meeting's time, which a partner's appointment
    gives (often days ahead), and waits for a meeting contact logged after it.
    """

    mql_acceptance: DurationSpec = DurationSpec(business_hours=1)
    mql_fast_lane: DurationSpec = DurationSpec(minutes=5)
    first_touch: DurationSpec = DurationSpec(business_days=3)
    first_touch_surge: DurationSpec = DurationSpec(business_days=1)
    first_contact: DurationSpec = DurationSpec(business_days=1)
    owner_activity: DurationSpec = DurationSpec(business_days=10)
    first_meeting: DurationSpec = DurationSpec(business_days=2)

    def rules(self, calendar: BusinessCalendar) -> SlaRules:
        """Return the SLA rules."""
        kinds = {"mql_acceptance": ClockKind.MQL_ACCEPTANCE,
                 "mql_fast_lane": ClockKind.MQL_ACCEPTANCE,
                 "first_touch": ClockKind.FIRST_TOUCH,
                 "first_touch_surge": ClockKind.FIRST_TOUCH,
                 "first_contact": ClockKind.FIRST_CONTACT,
                 "owner_activity": ClockKind.OWNER_ACTIVITY,
                 "first_meeting": ClockKind.FIRST_MEETING}
        return SlaRules(**{name: getattr(self, name).rule(name, kind, calendar)
                           for name, kind in kinds.items()})


class RouteSpec(Strict):
    """Where one recipient hears: a Slack webhook, a channel for the bot, e-mail addresses."""

    slack_webhook_url: HttpUrl | None = None
    slack_channel: SlackChannel | None = None
    email: list[EmailAddress] = Field(default_factory=list)


class TeamSpec(RouteSpec):
    """A team's channel, and where its team lead hears escalations."""

    lead: RouteSpec | None = None


class ChannelsSpec(Strict):
    """Per-team, per-rep and manager channels; anything missing falls back to the default."""

    teams: dict[str, TeamSpec] = Field(default_factory=dict)
    reps: dict[str, RouteSpec] = Field(default_factory=dict)
    manager: RouteSpec | None = None


class NotifierFile(Strict):
    """The whole YAML document; every section is optional."""

    calendar: CalendarSpec = CalendarSpec()
    sla: SlaSpec = SlaSpec()
    channels: ChannelsSpec = ChannelsSpec()


@dataclass(frozen=True)
class Destination:
    """One place messages go: a webhook, a bot channel, a mailbox or the console."""

    key: str
    kind: DestinationKind
    target: str


@dataclass(frozen=True)
class Environment:
    """What the environment adds: the default route and whether bot and SMTP are set up."""

    slack_webhook_url: str | None
    slack_channel: str | None
    email_to: tuple[str, ...]
    bot_configured: bool
    smtp_configured: bool
    locale: str
    display_timezone: str


@dataclass(frozen=True)
class NotifierConfig:
    """The validated configuration: the rules' policy and the destinations it names."""

    policy: Policy
    destinations: dict[str, Destination]


class ConfigError(ValueError):
    """The configuration is invalid; the message says where and why."""


def read_file(path: Path | None) -> NotifierFile:
    """Return the YAML configuration at ``path`` (defaults when None); raise ConfigError."""
    if path is None:
        return NotifierFile()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    try:
        return NotifierFile.model_validate(data or {})
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, item['loc'])) or '(document)'}: {item['msg']}"
                    for item in error.errors()]
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None


def build(file: NotifierFile, environment: Environment) -> NotifierConfig:
    """Return the configuration of ``file`` with the environment's defaults; raise ConfigError."""
    destinations: dict[str, Destination] = {}

    def route(spec: RouteSpec | None, where: str) -> tuple[str, ...]:
        if spec is None:
            return ()
        if spec.slack_channel and not environment.bot_configured:
            raise ConfigError(f"{where}.slack_channel needs BATON_SLACK_BOT_TOKEN")
        if spec.email and not environment.smtp_configured:
            raise ConfigError(f"{where}.email needs BATON_SMTP_URL")
        found = [webhook(str(spec.slack_webhook_url))] if spec.slack_webhook_url else []
        if spec.slack_channel:
            found.append(Destination(f"slack_bot:{spec.slack_channel}", "slack_bot",
                                     spec.slack_channel))
        found += [Destination(f"email:{address}", "email", address) for address in spec.email]
        for destination in found:
            destinations[destination.key] = destination
        return tuple(destination.key for destination in found)

    channels = file.channels
    # The environment's channel and recipients count only once their secret is set.
    default = route(RouteSpec.model_validate({
        "slack_webhook_url": environment.slack_webhook_url,
        "slack_channel": environment.slack_channel if environment.bot_configured else None,
        "email": list(environment.email_to) if environment.smtp_configured else [],
    }), "environment")
    teams = {name: route(team, f"channels.teams.{name}") for name, team in channels.teams.items()}
    leads = {name: route(team.lead, f"channels.teams.{name}.lead")
             for name, team in channels.teams.items()}
    reps = {name: route(rep, f"channels.reps.{name}") for name, rep in channels.reps.items()}
    manager = route(channels.manager, "channels.manager")
    if not default:
        destinations[CONSOLE] = Destination(CONSOLE, "console", "stdout")
        default = (CONSOLE,)
    calendar = file.calendar.calendar()
    policy = Policy(
        calendar=calendar, rules=file.sla.rules(calendar),
        directory=Directory(default=default, teams=teams, team_leads=leads, reps=reps,
                            manager=manager),
        locale=environment.locale, display_timezone=ZoneInfo(environment.display_timezone))
    return NotifierConfig(policy=policy, destinations=destinations)


def webhook(url: str) -> Destination:
    """Return the destination of a webhook URL, named by a hash: the URL itself is a secret."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return Destination(f"slack_webhook:{digest}", "slack_webhook", url)
