"""Ingest's access rules: hashed keys, request signatures and per-key rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.access import (
    ApiKey,
    KeyRing,
    RateLimiter,
    SignatureError,
    hash_api_key,
    hubspot_signature,
    hubspot_uri,
    key_hint,
    new_api_key,
    retry_after,
    signature,
    verify_hubspot,
    verify_signature,
)

NOW = 1_800_000_000.0


def key(key_id: str = "key_1", per_minute: int | None = None) -> ApiKey:
    return ApiKey(key_id, "web", hash_api_key(key_id), rate_limit_per_minute=per_minute)


def test_a_key_hint_shows_only_the_last_four_characters() -> None:
    # A key of BATON_INGEST_API_KEYS may have 16 characters: its first 8 were half of it.
    assert key_hint("web-0123456789ab") == "…89ab"
    created = new_api_key()
    assert key_hint(created) == "…" + created[-4:]


def test_a_key_is_found_by_what_the_caller_presents_and_stored_only_hashed() -> None:
    presented = new_api_key()
    stored = ApiKey("key_1", "web", hash_api_key(presented))
    ring = KeyRing([stored])
    assert ring.find(presented) == stored
    assert ring.find(presented + "x") is None
    assert presented.encode() not in stored.key_hash
    ring.replace([])
    assert ring.find(presented) is None, "a revoked key is gone at the next reload"


def test_new_keys_are_long_and_never_repeat() -> None:
    keys = {new_api_key() for _ in range(100)}
    assert len(keys) == 100 and all(len(k) >= 40 for k in keys)


def test_a_signature_is_valid_only_fresh_and_for_the_exact_body() -> None:
    body = '{"email": "山田@example.co.jp"}'.encode()
    stamp = str(int(NOW))
    good = signature("secret", stamp, body)
    expected = hmac.new(b"secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert good == f"v1={expected}"
    verify_signature("secret", timestamp=stamp, presented=good, body=body, now=NOW + 299,
                     tolerance_seconds=300)
    problems: dict[str, dict[str, Any]] = {
        "outside the allowed window": {"now": NOW + 301},
        "outside": {"now": NOW - 301},  # from the future is as bad as from the past
        "does not match": {"body": body + b" "},
        "missing X-Baton-Signature": {"presented": None},
        "missing signature timestamp": {"timestamp": None},
        "not a Unix time": {"timestamp": "yesterday"},
    }
    for problem, kwargs in problems.items():
        arguments: dict[str, Any] = {"timestamp": stamp, "presented": good, "body": body,
                                     "now": NOW, "tolerance_seconds": 300, **kwargs}
        with pytest.raises(SignatureError, match=problem):
            verify_signature("secret", **arguments)


@pytest.mark.parametrize("stamp", ["9" * 400, "-" + "9" * 400])
def test_a_timestamp_too_large_for_any_clock_is_outside_the_window(stamp: str) -> None:
    # An integer that no float can hold: dividing it overflowed into a server error.
    body = b'{"email": "a@example.co.jp"}'
    with pytest.raises(SignatureError, match="outside the allowed window"):
        verify_signature("secret", timestamp=stamp, presented=signature("secret", stamp, body),
                         body=body, now=NOW, tolerance_seconds=300)
    uri = "https://leads.example.com/v1/webhooks/hubspot"
    with pytest.raises(SignatureError, match="outside the allowed window"):
        verify_hubspot("app-secret", method="POST", uri=uri, body=body, timestamp=stamp,
                       presented=hubspot_signature("app-secret", method="POST", uri=uri,
                                                   body=body, timestamp=stamp),
                       now=NOW, tolerance_seconds=300)


def test_hubspot_v3_signs_method_uri_body_and_milliseconds() -> None:
    uri = "https://leads.example.com/v1/webhooks/hubspot?portal=1"
    body = b'{"fields": []}'
    stamp = str(int(NOW * 1000))
    digest = hmac.new(b"app-secret", b"POST" + uri.encode() + body + stamp.encode(),
                      hashlib.sha256).digest()
    assert hubspot_signature("app-secret", method="POST", uri=uri, body=body,
                             timestamp=stamp) == base64.b64encode(digest).decode()
    presented = base64.b64encode(digest).decode()
    verify_hubspot("app-secret", method="POST", uri=uri, body=body, timestamp=stamp,
                   presented=presented, now=NOW + 299, tolerance_seconds=300)
    with pytest.raises(SignatureError, match="window"):
        verify_hubspot("app-secret", method="POST", uri=uri, body=body, timestamp=stamp,
                       presented=presented, now=NOW + 301, tolerance_seconds=300)
    with pytest.raises(SignatureError, match="does not match"):
        verify_hubspot("other", method="POST", uri=uri, body=body, timestamp=stamp,
                       presented=presented, now=NOW, tolerance_seconds=300)


def test_hubspot_signs_the_uri_with_its_listed_escapes_decoded() -> None:
    assert hubspot_uri("https://x.jp/hook?next=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B&q=%20") == (
        "https://x.jp/hook?next=:/?@!$'()*,;&q=%20")


def test_a_key_may_burst_a_minute_of_requests_then_waits_for_tokens() -> None:
    limiter = RateLimiter(default_per_minute=60)
    assert [limiter.acquire(key(), NOW) for _ in range(60)] == [0.0] * 60
    wait = limiter.acquire(key(), NOW)
    assert wait == pytest.approx(1.0)
    assert retry_after(wait) == "1"
    assert limiter.acquire(key(), NOW + 0.5) > 0, "half a token is not a request"
    assert limiter.acquire(key(), NOW + 1.0) == 0.0
    assert limiter.acquire(key("key_2"), NOW) == 0.0, "each key has its own bucket"


def test_a_key_with_its_own_limit_uses_it() -> None:
    limiter = RateLimiter(default_per_minute=1000)
    slow = key(per_minute=2)
    assert [limiter.acquire(slow, NOW) for _ in range(3)][-1] == pytest.approx(30.0)
    assert retry_after(0.2) == "1" and retry_after(29.1) == "30"


@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=200),
       st.integers(min_value=1, max_value=600))
def test_no_key_gets_more_than_its_rate_over_any_stretch(gaps: list[float], rate: int) -> None:
    limiter = RateLimiter(default_per_minute=rate)
    now, granted = NOW, 0
    for gap in gaps:
        now += gap
        granted += limiter.acquire(key(), now) == 0.0
    assert granted <= rate + (now - NOW) * rate / 60 + 1e-9


@given(st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=100),
       st.integers(min_value=1, max_value=600))
def test_a_token_given_back_is_as_if_it_was_never_taken(gaps: list[float], rate: int) -> None:
    # A request whose signature turns out replayed gives its token back: it must not spend
    # the key's quota.
    refunding, untouched = RateLimiter(default_per_minute=rate), RateLimiter(rate)
    now = NOW
    for gap in gaps:
        now += gap
        if refunding.acquire(key(), now) == 0.0:
            refunding.refund(key())
        assert refunding.acquire(key(), now) == pytest.approx(untouched.acquire(key(), now))
