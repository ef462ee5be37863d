"""Channels, calendar and SLA table from YAML and the environment, validated at start-up."""

from __future__ import annotations

import textwrap
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from baton_runtime.settings import SettingsError, load_settings
from services.notifier import config as config_module
from services.notifier.config import (
    CONSOLE,
    ConfigError,
    Environment,
    NotifierFile,
    build,
    read_file,
    webhook,
)
from services.notifier.domain import Audience, ClockKind
from services.notifier.settings import NotifierSettings

REQUIRED = {"BATON_DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/baton",
            "BATON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
TEAM_HOOK = "https://hooks.slack.com/services/T1/B1/sdr"
REP_HOOK = "https://hooks.slack.com/services/T1/B2/rep"
YAML = f"""
calendar:
  timezone: Asia/Tokyo
  hours: "10:00-19:00"
  workdays: [mon, tue, wed, thu, fri, sat]
sla:
  mql_acceptance: {{business_minutes: 30}}
  owner_activity: {{days: 14}}
channels:
  teams:
    sdr:
      slack_webhook_url: {TEAM_HOOK}
      email: [sdr@example.co.jp]
      lead: {{slack_channel: "#sdr-leads"}}
  reps:
    rep-1: {{slack_webhook_url: {REP_HOOK}}}
  manager: {{slack_channel: "#sales-managers", email: [bucho@example.co.jp]}}
"""


def environment(**overrides: object) -> Environment:
    values: dict[str, object] = {"slack_webhook_url": None, "slack_channel": None,
                                 "email_to": (), "bot_configured": False,
                                 "smtp_configured": False, "locale": "ja",
                                 "display_timezone": "Asia/Tokyo"}
    return Environment(**{**values, **overrides})  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notifier.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_without_any_configuration_alerts_go_to_the_console() -> None:
    config = build(NotifierFile(), environment())
    assert list(config.destinations) == [CONSOLE]
    assert config.policy.directory.destinations(
        (Audience.OWNER, Audience.TEAM, Audience.MANAGER), owner_id="rep", team="sdr") == [
        CONSOLE]


def test_the_yaml_file_sets_calendar_sla_table_and_every_recipient(tmp_path: Path) -> None:
    config = build(read_file(write(tmp_path, YAML)),
                   environment(bot_configured=True, smtp_configured=True))
    policy = config.policy
    assert (policy.calendar.opens, policy.calendar.closes) == (time(10), time(19))
    assert policy.rules.mql_acceptance.duration == timedelta(minutes=30)
    assert policy.rules.mql_acceptance.business
    assert not policy.rules.owner_activity.business
    directory = policy.directory
    team, rep = webhook(TEAM_HOOK).key, webhook(REP_HOOK).key
    assert directory.destinations((Audience.OWNER, Audience.TEAM), owner_id="rep-1",
                                  team="sdr") == [rep, team, "email:sdr@example.co.jp"]
    assert directory.destinations((Audience.TEAM_LEAD,), owner_id=None, team="sdr") == [
        "slack_bot:#sdr-leads"]
    assert directory.destinations((Audience.MANAGER,), owner_id=None, team=None) == [
        "slack_bot:#sales-managers", "email:bucho@example.co.jp"]
    assert {d.kind for d in config.destinations.values()} == {"slack_webhook", "slack_bot",
                                                              "email", "console"}


def test_the_first_meeting_s_record_is_due_two_working_days_after_it_unless_configured(
        tmp_path: Path) -> None:
    default = build(NotifierFile(), environment()).policy
    rule = default.rules.first_meeting
    assert (rule.name, rule.kind, rule.business) == ("first_meeting", ClockKind.FIRST_MEETING,
                                                     True)
    assert rule.duration == 2 * default.calendar.business_day == timedelta(hours=18)
    assert default.rules.by_name()["first_meeting"] == rule
    configured = build(read_file(write(tmp_path, "sla: {first_meeting: {hours: 48}}")),
                       environment()).policy.rules.first_meeting
    assert (configured.duration, configured.business) == (timedelta(hours=48), False)
    with pytest.raises(ConfigError, match=r"sla\.first_meeting: .*exactly one"):
        read_file(write(tmp_path, "sla: {first_meeting: {hours: 48, business_days: 2}}"))

def test_the_year_end_closing_is_the_default_and_closed_days_are_configurable(
        tmp_path: Path) -> None:
    assert not build(NotifierFile(), environment()).policy.calendar.is_business_day(
        date(2026, 12, 30))
    calendar = build(read_file(write(tmp_path, "calendar: {closed_days: ['08-13']}")),
                     environment()).policy.calendar
    assert calendar.is_business_day(date(2026, 12, 30))
    assert not calendar.is_business_day(date(2026, 8, 13))  # a Thursday of Obon


def test_working_days_are_configurable(tmp_path: Path) -> None:
    calendar = build(read_file(write(tmp_path, YAML)),
                     environment(bot_configured=True, smtp_configured=True)).policy.calendar
    assert calendar.is_business_day(date(2026, 11, 28))  # a Saturday
    assert not calendar.is_business_day(date(2026, 11, 29))


def test_webhook_destinations_are_named_by_a_hash_never_by_their_secret_url() -> None:
    key = webhook(TEAM_HOOK).key
    assert key.startswith("slack_webhook:") and "hooks.slack.com" not in key
    assert webhook(TEAM_HOOK).key == key != webhook(REP_HOOK).key


def test_the_environment_gives_the_default_route_once_its_secrets_are_set() -> None:
    without_secrets = build(NotifierFile(), environment(slack_channel="#sales-alerts",
                                                        email_to=("ops@example.com",)))
    assert list(without_secrets.destinations) == [CONSOLE]
    with_secrets = build(NotifierFile(), environment(
        slack_webhook_url=TEAM_HOOK, slack_channel="#sales-alerts", email_to=("ops@example.com",),
        bot_configured=True, smtp_configured=True))
    assert with_secrets.policy.directory.default == (
        webhook(TEAM_HOOK).key, "slack_bot:#sales-alerts", "email:ops@example.com")


@pytest.mark.parametrize(("text", "problem"), [
    ("sla: {mql_acceptance: {minutes: 5, business_hours: 1}}", "sla.mql_acceptance"),
    ("sla: {first_touch: {fortnights: 1}}", "sla.first_touch.fortnights"),
    ("calendar: {timezone: Mars/Olympus}", "unknown time zone"),
    ("calendar: {hours: '18:00-09:00'}", "must be before closing"),
    ("calendar: {workdays: [someday]}", "calendar.workdays.0"),
    ("calendar: {holidays_country: XX}", "calendar.holidays_country: Value error, no public"),
    ("calendar: {closed_days: ['12-32']}", "'12-32' is not a day of the year"),
    ("channels: {teams: {sdr: {email: [not-an-address]}}}", "channels.teams.sdr.email.0"),
    ("channels: {reps: {r: {slack_webhook_url: 'ftp://x'}}}", "channels.reps.r.slack_webhook_url"),
    ("chanels: {}", "chanels"),
    ("[1, 2", "cannot read"),
])
def test_a_bad_file_is_refused_saying_where(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        read_file(write(tmp_path, text))


def test_a_slack_channel_needs_the_bot_token_and_e_mail_needs_smtp(tmp_path: Path) -> None:
    file = read_file(write(tmp_path, YAML))
    with pytest.raises(ConfigError, match=r"channels\.teams\.sdr\.email needs BATON_SMTP_URL"):
        build(file, environment(bot_configured=True))
    with pytest.raises(ConfigError, match="slack_channel needs BATON_SLACK_BOT_TOKEN"):
        build(file, environment(smtp_configured=True))


def test_start_up_names_the_variable_whose_file_is_wrong(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATON_NOTIFIER_CONFIG_FILE", str(write(tmp_path, YAML)))
    with pytest.raises(SettingsError, match=r"BATON_NOTIFIER_CONFIG_FILE .*needs BATON_SMTP_URL"):
        load_settings(NotifierSettings)
    monkeypatch.setenv("BATON_SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("BATON_SMTP_URL", "smtp://127.0.0.1:2525")
    settings = load_settings(NotifierSettings)
    assert "slack_bot:#sales-managers" in settings.notifier_config().destinations


def test_a_missing_file_is_refused_at_start_up(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATON_NOTIFIER_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(SettingsError, match=r"BATON_NOTIFIER_CONFIG_FILE .*cannot read"):
        load_settings(NotifierSettings)


def test_japanese_in_the_yaml_file_round_trips(tmp_path: Path) -> None:
    file = read_file(write(tmp_path, "channels: {teams: {営業一課: {email: [a@example.jp]}}}"))
    assert list(file.channels.teams) == ["営業一課"]


def test_a_bad_recipient_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BATON_SMTP_URL", "smtp://127.0.0.1:2525")
    monkeypatch.setenv("BATON_ALERT_EMAIL_TO", "ops@example.com, not an address")
    with pytest.raises(SettingsError, match="BATON_ALERT_EMAIL_TO String should match"):
        load_settings(NotifierSettings)


def test_the_documented_example_is_a_valid_configuration(tmp_path: Path) -> None:
    assert config_module.__doc__ is not None
    example = textwrap.dedent(config_module.__doc__.split("::\n")[1].split("\n\n")[0])
    config = build(read_file(write(tmp_path, example)),
                   environment(bot_configured=True, smtp_configured=True))
    assert "slack_bot:#sdr-leads" in config.destinations
    assert config.policy.rules.owner_activity.duration == timedelta(hours=90)
    assert config.policy.rules.first_meeting.duration == timedelta(hours=18)
