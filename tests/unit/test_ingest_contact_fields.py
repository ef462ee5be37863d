"""A contact's phone and e-mail address: limited and checked as they are stored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.events import PHONE_LENGTH
from services.ingest.domain import account_key, lead_id_for, normalise_email
from services.ingest.submissions import ActivitySubmission, LeadSubmission


@pytest.mark.parametrize(("raw", "phone"), [
    ("+1 (415) 555-0123 extension 12345", "+14155550123;ext=12345"),  # 33 characters
    ("+1 650 253 0000 ext. 1234567890123456", "+16502530000"),  # extension too long to keep
    ("+81 (0)3 - 1234 - 5678  （内線：１２３４５）", "+81312345678;ext=12345"),
])
def test_a_phone_is_limited_as_stored_not_as_written(raw: str, phone: str) -> None:
    # Its 32 characters were checked on the text as sent: spaces, brackets and "extension"
    # had a number refused (422) whose stored form fits with room to spare.
    assert len(raw) > PHONE_LENGTH
    lead = LeadSubmission.model_validate({"email": "a@example.co.jp", "phone": raw})
    assert lead.phone == phone and len(phone) <= PHONE_LENGTH


def test_a_phone_far_longer_than_any_way_of_writing_one_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as raised:
        LeadSubmission.model_validate({"email": "a@example.co.jp",
                                       "phone": "03-1234-5678" + " " * 100})
    assert [(error["loc"], error["type"]) for error in raised.value.errors()] == [
        (("phone",), "string_too_long")]


def test_one_trailing_dot_of_a_mail_domain_makes_no_other_lead_or_account() -> None:
    # "example.com." is example.com in DNS; kept, it made another lead and account.
    lead = LeadSubmission.model_validate({"email": "Taro@Example.com."})
    assert lead.email == "taro@example.com"
    assert lead_id_for(lead.email) == lead_id_for("taro@example.com")
    assert account_key(lead.email, None) == "domain:example.com"
    assert normalise_email("hanako@例え.jp.") == normalise_email("hanako@例え。jp。") == (
        "hanako@xn--r8jz45g.jp")


@pytest.mark.parametrize("email", [
    "taro@example..com", "taro@-bad-.com", "taro@bad-.example.com", "taro@.example.com",
    "taro@example.com..", "taro@exa_mple.com", "taro@example.123", "taro@例え..jp",
    "taro@" + "a" * 64 + ".com", "taro@example.com-", "taro@[192.0.2.1].jp", "taro@例え.jp..",
])
def test_a_malformed_mail_domain_is_refused_naming_the_email(email: str) -> None:
    # ASCII domains were never checked: "example..com" and "-bad-.com" were accepted, each a
    # lead and an account, while "例え..jp" was refused.
    activity = {"type": "page_view.pricing"}
    for model, fields in ((LeadSubmission, {}), (ActivitySubmission, activity)):
        with pytest.raises(ValidationError) as raised:
            model.model_validate({"email": email, **fields})
        assert [error["loc"] for error in raised.value.errors()] == [("email",)], model


@pytest.mark.parametrize("email", [
    "taro@example.com", "taro@sub.example.co.jp", "taro@a-b.example.com", "taro@x.io",
    "taro@xn--r8jz45g.jp", "taro@123.example.com", "taro@a.b.c.d.example.jp",
])
def test_a_well_formed_mail_domain_is_kept_as_it_is(email: str) -> None:
    assert LeadSubmission.model_validate({"email": email}).email == email
