"""`baton demo` against the whole stack: a new user sees hot-lead alerts within a minute."""

from __future__ import annotations

import itertools
import time

import pytest

from baton.demo import TrafficGenerator, post_stream
from tests.support.fake_slack import FakeSlack
from tests.support.stack import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
API_KEY = "demo-test-key-0123456789"
SEED = 11


async def test_the_demo_stream_gets_hot_leads_alerted_within_a_minute() -> None:
    hot_names = {submission.body["name"] for submission in itertools.islice(
        TrafficGenerator(SEED), 60) if submission.hot}
    async with FakeSlack().running() as slack, running_stack({
        "BATON_SLACK_WEBHOOK_URL": slack.webhook_url,
        "BATON_INGEST_API_KEYS": f"demo={API_KEY}",
    }) as stack:
        started = time.monotonic()
        code = await post_stream(stack.url("ingest"), API_KEY, count=60, rate=30, seed=SEED)
        assert code == 0, "every demo request was accepted"
        [first, *_] = await slack.wait_for(1, timeout=60 - (time.monotonic() - started))
        assert any(name in first.body["text"] for name in hot_names), first.body["text"]
