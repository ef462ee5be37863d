"""The demo traffic generator: realistic, valid, reproducible, and hot leads where promised."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from baton.demo import ICP_INDUSTRIES, Submission, TrafficGenerator
from schemas.events import TouchpointType
from services.ingest.submissions import ActivitySubmission, LeadSubmission

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def stream(count: int, seed: int = 7) -> list[Submission]:
    return list(itertools.islice(TrafficGenerator(seed), count))


def test_every_request_of_the_mix_is_a_valid_submission() -> None:
    for submission in stream(500):
        model = LeadSubmission if submission.path == "/v1/leads" else ActivitySubmission
        model.model_validate(submission.body)


def test_the_mix_has_forms_activities_appointments_and_both_languages() -> None:
    submissions = stream(400)
    kinds = Counter(s.kind for s in submissions)
    assert kinds["appointment.set"] >= 20
    assert sum(n for kind, n in kinds.items() if kind.startswith(("page_view", "email"))) >= 80
    assert kinds["webinar.registration"] >= 5 and kinds["download.industry_report"] >= 5
    names = [s.body["name"] for s in submissions if "name" in s.body]
    assert any(JAPANESE.search(name) for name in names)
    assert any(name.isascii() for name in names)
    notes = [s.body["partner_notes"] for s in submissions if s.kind == "appointment.set"]
    assert all({"partner", "challenges", "temperature"} <= set(n) for n in notes)


def test_a_partner_appointment_says_when_the_meeting_is_in_japan_time_days_ahead() -> None:
    # The notifier's first-meeting clock starts at that time.
    now = datetime.now(UTC)
    for submission in stream(400):
        if submission.kind == "appointment.set":
            meeting = ActivitySubmission.model_validate(submission.body).partner_notes
            assert meeting is not None and meeting.meeting_at is not None
            assert meeting.meeting_at.utcoffset() == timedelta(hours=9)
            assert now < meeting.meeting_at < now + timedelta(days=8)
            assert 10 <= meeting.meeting_at.hour <= 16


def test_the_stream_opens_with_a_hot_lead_and_keeps_sending_them() -> None:
    submissions = stream(300)
    assert submissions[0].hot
    hot = [s for s in submissions if s.hot]
    assert len(hot) >= 15
    for submission in hot:
        body = submission.body
        lead = LeadSubmission.model_validate(body)
        assert lead.touchpoint.type in (TouchpointType.INQUIRY_DEMO_REQUEST,
                                        TouchpointType.INQUIRY_QUOTE_REQUEST)
        assert body["industry"] in ICP_INDUSTRIES
        assert body["employee_band"] in ("100-499", "500-999", "1000+")
        assert re.search(r"部長|課長|社長|役員|CEO|VP|Manager|Head", body["title"]), body["title"]
        assert not lead.email.endswith(("gmail.com", "docomo.ne.jp", "yahoo.co.jp")), (
            "free mail would cost fit points")


def test_the_same_seed_gives_the_same_stream_and_addresses_never_repeat() -> None:
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    first, second = (list(itertools.islice(TrafficGenerator(3, now=now), 50)) for _ in "ab")
    assert first == second
    assert first != list(itertools.islice(TrafficGenerator(4, now=now), 50))
    forms = list(itertools.islice(TrafficGenerator(3).lead_forms(), 300))
    assert len({form["email"] for form in forms}) == 300
