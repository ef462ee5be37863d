"""Ingest's pure rules: normalising what web forms send and deriving identities."""

from __future__ import annotations

import unicodedata
import uuid

# A stable namespace so that one e-mail address always maps to one lead id.
LEAD_NAMESPACE = uuid.UUID("6f1c2a52-7d3e-4c8e-9f0a-2b5d8e4c1a90")

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com", "yahoo.com", "yahoo.co.jp", "hotmail.com", "outlook.com", "outlook.jp",
        "live.jp", "icloud.com", "me.com", "aol.com", "protonmail.com", "gmx.com",
        "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp",
        "ymobile.ne.jp", "nifty.com", "biglobe.ne.jp", "ocn.ne.jp", "so-net.ne.jp",
    }
)
# Corporate suffixes dropped when companies are matched by name (free-mail leads).
COMPANY_SUFFIXES = ("株式会社", "有限会社", "合同会社", "(株)", "（株）", "inc.", "inc",
                    "co., ltd.", "co.,ltd.", "ltd.", "ltd", "llc", "corporation", "corp.")


def normalise_text(value: str | None) -> str | None:
    """Return ``value`` in Unicode NFKC with outer whitespace removed, or None if empty."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", value).strip()
    return text or None


def normalise_email(email: str) -> str:
    """Return the e-mail address in NFKC and lower case."""
    return unicodedata.normalize("NFKC", email).strip().lower()


def email_domain(email: str) -> str:
    """Return the domain part of a normalised e-mail address."""
    return email.rsplit("@", 1)[1]


def is_free_mail(domain: str) -> bool:
    """Return True for consumer and carrier mail domains that do not identify a company."""
    return domain in FREE_MAIL_DOMAINS


def company_key(company: str) -> str:
    """Return a company name reduced to what identifies it: NFKC, lower case, no suffix."""
    key = unicodedata.normalize("NFKC", company).lower()
    for suffix in COMPANY_SUFFIXES:
        key = key.replace(suffix, "")
    return "".join(key.split())


def account_key(email: str, company: str | None) -> str:
    """Return the account's key: the mail domain, or the company name for free mail."""
    domain = email_domain(email)
    if is_free_mail(domain) and company:
        return f"name:{company_key(company)}"
    return f"domain:{domain}"


def lead_id_for(email: str) -> uuid.UUID:
    """Return the lead id of a normalised e-mail address: one lead per address."""
    return uuid.uuid5(LEAD_NAMESPACE, email)
