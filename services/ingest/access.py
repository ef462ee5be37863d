"""Who may post to ingest: API keys, request signatures and rate limits (pure rules)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from schemas.events import SOURCE_LENGTH

KEY_PREFIX = "bk_"
SIGNING_SECRET_PREFIX = "bks_"
SIGNATURE_SCHEME = "v1="
HUBSPOT_SOURCE = "hubspot"
# HubSpot's v3 signature is computed over the URI with these escapes decoded.
HUBSPOT_DECODED_ESCAPES = ("%3A", "%2F", "%3F", "%40", "%21", "%24", "%27", "%28", "%29", "%2A",
                           "%2C", "%3B")


class SignatureError(Exception):
    """A signed request failed verification; the message says why."""


@dataclass(frozen=True)
class ApiKey:
    """An active API key as the service knows it: never the key itself, only its hash."""

    key_id: str
    source: str
    key_hash: bytes
    signing_secret: str | None = None
    rate_limit_per_minute: int | None = None


def valid_source(source: str) -> str:
    """Return ``source`` stripped if a key may be given to it; raise ValueError otherwise."""
    name = source.strip()
    if not name or len(name) > SOURCE_LENGTH:
        raise ValueError(f"a source is 1 to {SOURCE_LENGTH} characters (its events carry it)")
    return name


def new_api_key() -> str:
    """Return a fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_signing_secret() -> str:
    """Return a fresh random request-signing secret."""
    return SIGNING_SECRET_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """Return a short public identifier for a key, for listing and revoking it."""
    return "key_" + secrets.token_hex(6)


def hash_api_key(key: str) -> bytes:
    """Return the stored form of a key: SHA-256 is enough for random, high-entropy keys."""
    return hashlib.sha256(key.encode()).digest()


def key_hint(key: str) -> str:
    """Return the last 4 characters of a key, enough to recognise it in a listing."""
    # Keys may be as short as 16 characters: the start of one would give away half of it.
    return "…" + key[-4:]


class KeyRing:
    """The active keys of this process, looked up by the hash of what a caller presents."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._by_hash: dict[bytes, ApiKey] = {}
        self.replace(keys)

    def replace(self, keys: Iterable[ApiKey]) -> None:
        """Make ``keys`` the whole set of active keys."""
        self._by_hash = {key.key_hash: key for key in keys}

    def find(self, presented: str) -> ApiKey | None:
        """Return the active key ``presented`` is, or None."""
        return self._by_hash.get(hash_api_key(presented))

    def signing_keys(self, source: str) -> list[ApiKey]:
        """Return the active keys of ``source`` that carry a signing secret."""
        return [key for key in self._by_hash.values()
                if key.source == source and key.signing_secret is not None]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Baton-Signature`` value of a request: HMAC-SHA256 of timestamp and body."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_SCHEME + digest.hexdigest()


def check_timestamp(timestamp: str | None, now: float, tolerance_seconds: float,
                    *, milliseconds: bool = False) -> None:
    """Return if ``timestamp`` (Unix time) is within ``tolerance_seconds`` of ``now``."""
    if timestamp is None:
        raise SignatureError("missing signature timestamp")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError("signature timestamp is not a Unix time") from None
    try:
        age = abs(now - sent / (1000 if milliseconds else 1))
    except OverflowError:  # too many digits for a float: nowhere near now
        age = math.inf
    if age > tolerance_seconds:
        raise SignatureError("signature timestamp is outside the allowed window")


def verify_signature(secret: str, *, timestamp: str | None, presented: str | None, body: bytes,
                     now: float, tolerance_seconds: float) -> None:
    """Return if the request carries a fresh, valid signature; raise SignatureError if not."""
    if presented is None:
        raise SignatureError("this key requires signed requests: missing X-Baton-Signature")
    check_timestamp(timestamp, now, tolerance_seconds)
    assert timestamp is not None  # checked above
    if not hmac.compare_digest(presented.encode(), signature(secret, timestamp, body).encode()):
        raise SignatureError("signature does not match")


def hubspot_uri(url: str) -> str:
    """Return the request URI as HubSpot signs it: the listed escapes decoded."""
    for escape in HUBSPOT_DECODED_ESCAPES:
        url = url.replace(escape, unquote(escape)).replace(escape.lower(), unquote(escape))
    return url


def hubspot_signature(secret: str, *, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """Return HubSpot's v3 signature: base64 HMAC-SHA256 of method, URI, body and timestamp."""
    message = method.encode() + hubspot_uri(uri).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify_hubspot(secret: str, *, method: str, uri: str, body: bytes, timestamp: str | None,
                   presented: str | None, now: float, tolerance_seconds: float) -> None:
    """Return if a HubSpot v3 signature is valid and fresh; raise SignatureError if not."""
    if presented is None:
        raise SignatureError("missing X-HubSpot-Signature-v3")
    check_timestamp(timestamp, now, tolerance_seconds, milliseconds=True)
    assert timestamp is not None  # checked above
    expected = hubspot_signature(secret, method=method, uri=uri, body=body, timestamp=timestamp)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise SignatureError("HubSpot signature does not match")


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """Token buckets per key: ``rate`` requests a minute, bursts of up to a minute's worth."""

    default_per_minute: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, key: ApiKey, now: float) -> float:
        """Take one request's token; return 0, or how many seconds until one is free."""
        rate = self._rate(key)
        capacity = float(rate)
        bucket = self._buckets.setdefault(key.key_id, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate / 60)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) * 60 / rate

    def refund(self, key: ApiKey) -> None:
        """Give back the token ``acquire`` took for a request that did not count."""
        bucket = self._buckets[key.key_id]
        # Capped: the bucket may have filled up while the request was being recorded.
        bucket.tokens = min(float(self._rate(key)), bucket.tokens + 1)

    def _rate(self, key: ApiKey) -> int:
        """Return the requests a minute ``key`` may make."""
        return key.rate_limit_per_minute or self.default_per_minute


def retry_after(seconds: float) -> str:
    """Return a Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
