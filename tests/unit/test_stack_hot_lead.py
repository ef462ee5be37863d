"""The curl ``baton run`` prints posts a lead the packaged scoring model makes hot (tier A)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

import pytest

from baton import registry, stack
from schemas.events import Tier
from services.ingest import domain
from services.ingest.handlers import PROFILE_FIELDS
from services.ingest.submissions import LeadSubmission
from services.scoring.domain import Activity, score_lead
from services.scoring.handlers import facts_of
from services.scoring.model import DEFAULT_MODEL_FILE, load_model


def printed_curl(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Return the words of the curl command the stack prints once it is up."""
    environment = {**stack.LOCAL_DEFAULTS, "BATON_DATABASE_URL": "postgresql://db/baton",
                   "BATON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
    ports = {name: registry.default_port(name) for name in registry.SERVICES}
    stack._print_addresses(environment, ports, [])
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("Post a hot lead:") + 1
    end = next(index for index in range(start, len(lines)) if not lines[index].endswith("\\"))
    return shlex.split("\n".join(lines[start:end + 1]))  # as a shell reads it


def test_the_printed_lead_is_tier_a_under_the_packaged_model(
        capsys: pytest.CaptureFixture[str]) -> None:
    words = printed_curl(capsys)
    assert words[:4] == ["curl", "-s", "-X", "POST"]
    assert words[4] == f"http://127.0.0.1:{registry.default_port('ingest')}/v1/leads"
    # What ingest makes of the body, and scoring of what ingest sends on.
    submission = LeadSubmission.model_validate_json(words[words.index("-d") + 1])
    profile = domain.profile_of({"email": submission.email,
                                 **submission.model_dump(include=set(PROFILE_FIELDS))})
    account = domain.account_for(submission.email, submission.company,
                                 submission.company_domain)
    now = datetime.now(UTC)
    result = score_lead(facts_of(profile, account), [Activity(submission.touchpoint.type, now)],
                        now, load_model(DEFAULT_MODEL_FILE))
    assert result.tier is Tier.A, (result.score, result.reasons)


def test_the_printed_export_points_the_baton_command_at_the_stack(
        capsys: pytest.CaptureFixture[str]) -> None:
    # `baton keys` and `baton dlq` read these two variables; without them they stop with
    # "BATON_DATABASE_URL is required but not set".
    # A database of your own is yours to export: its password stays off the screen.
    embedded = "postgresql://postgres@127.0.0.1:24871/baton"
    for database, shown in ((embedded, {"BATON_DATABASE_URL": embedded}),
                            ("postgresql://baton:s3cret@db:5432/baton", {})):
        environment = {**stack.LOCAL_DEFAULTS, "BATON_DATABASE_URL": database,
                       "BATON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
        stack._print_addresses(environment, {name: registry.default_port(name)
                                             for name in registry.SERVICES}, [])
        lines = capsys.readouterr().out.splitlines()
        [export] = [line for line in lines if line.strip().startswith("export ")]
        words = shlex.split(export, comments=True)
        assert dict(word.split("=", 1) for word in words[1:]) == {
            **shown, "BATON_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
        assert "s3cret" not in "\n".join(lines)
        assert lines[lines.index(export) + 1].split()[1:] == ["keys", "list"]
