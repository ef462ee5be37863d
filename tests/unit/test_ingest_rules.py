"""Ingest's normalisation and identity rules."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import Account, TouchpointType
from services.ingest.domain import (
    PLACEHOLDER_COMPANIES,
    account_for,
    account_key,
    company_key,
    decoy_event_id,
    is_free_mail,
    lead_id_for,
    normalise_domain,
    normalise_email,
    normalise_phone,
    normalise_text,
    profile_of,
    touchpoint_type_for,
)
from services.ingest.submissions import ActivitySubmission, LeadSubmission


def test_full_width_letters_and_digits_become_ascii() -> None:
    assert normalise_text("ＡＢＣ株式会社　１２３ ") == "ABC株式会社 123"
    assert normalise_email(" Ｔａｒｏ＠Ｅｘａｍｐｌｅ．ｃｏ．ｊｐ") == "taro@example.co.jp"


def test_japanese_names_round_trip_unchanged() -> None:
    assert normalise_text("山田 太郎") == "山田 太郎"
    assert normalise_text("株式会社サンプル") == "株式会社サンプル"


def test_one_lead_per_email_address() -> None:
    assert lead_id_for(normalise_email("A@Example.com")) == lead_id_for("a@example.com")
    assert lead_id_for("a@example.com") != lead_id_for("b@example.com")


def test_the_account_is_the_domain_or_the_company_for_free_mail() -> None:
    assert account_key("a@sample.co.jp", "株式会社サンプル") == "domain:sample.co.jp"
    assert is_free_mail("docomo.ne.jp")
    assert account_key("a@docomo.ne.jp", "株式会社サンプル") == account_key(
        "b@gmail.com", "（株）サンプル")
    assert company_key("Sample Co., Ltd.") == company_key("sample")


HIRAGANA_KATAKANA_KANJI = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=0x3041, max_codepoint=0x3096),
                       st.characters(min_codepoint=0x30A1, max_codepoint=0x30FA),
                       st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)),
    min_size=1, max_size=30)


@given(HIRAGANA_KATAKANA_KANJI)
def test_japanese_text_comes_back_exactly_as_sent(text: str) -> None:
    assert normalise_text(text) == text


@given(st.text(st.characters(exclude_characters="\x00"), max_size=50))
def test_normalising_twice_changes_nothing_more(text: str) -> None:
    once = normalise_text(text)
    assert normalise_text(once) == once


@given(st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{1,10}\.(co\.jp|com)", fullmatch=True))
def test_case_and_width_of_an_address_do_not_make_another_lead(email: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in email)
    assert lead_id_for(normalise_email(full_width.upper())) == lead_id_for(email)


@pytest.mark.parametrize(("raw", "e164"), [
    ("03-1234-5678", "+81312345678"),
    ("０９０－１２３４－５６７８", "+819012345678"),
    ("(06) 6123 4567", "+81661234567"),
    ("+1 415 555 0123", "+14155550123"),
])
def test_phone_numbers_become_e164_read_as_japanese_by_default(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", [
    "03-1234-5678（内線12）", "03-1234-5678(内線12)", "03-1234-5678 内線:12",
    "03-1234-5678 内線 12", "03-1234-5678（内線：１２）", "03-1234-5678 ext. 12",
    "03-1234-5678 x12", "+81312345678;ext=12",
])
def test_an_extension_in_japanese_or_english_is_kept_after_the_number(raw: str) -> None:
    assert normalise_phone(raw) == "+81312345678;ext=12"


def test_an_extension_that_would_not_fit_the_event_is_left_out() -> None:
    assert normalise_phone("0312345678ext" + "1" * 15) == "+81312345678;ext=" + "1" * 15
    assert normalise_phone("0312345678ext" + "1" * 16) == "+81312345678"
    assert normalise_phone("+1 650 253 0000 ext. 1234567890123456") == "+16502530000"


def test_a_lead_whose_extension_would_not_fit_is_accepted_with_the_number_alone() -> None:
    # 29 characters as sent, 33 with ";ext=": the extension is lost, as before extensions
    # were kept, but the lead must not be.
    lead = LeadSubmission.model_validate({"email": "a@example.co.jp",
                                          "phone": "0312345678ext" + "1" * 16})
    assert profile_of(lead.model_dump()).phone == "+81312345678"


def test_a_lead_with_an_extension_is_accepted_and_fits_the_captured_event() -> None:
    lead = LeadSubmission.model_validate({"email": "a@example.co.jp",
                                          "phone": "03-1234-5678（内線12）"})
    assert profile_of(lead.model_dump()).phone == "+81312345678;ext=12"


@pytest.mark.parametrize("raw", ["call me", "12", "03-1234"])
def test_what_is_not_a_phone_number_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="phone number"):
        normalise_phone(raw)


def test_company_domains_are_reduced_to_their_host() -> None:
    assert normalise_domain("https://www.Sample.co.jp/company/about?x=1") == "sample.co.jp"
    assert normalise_domain("ＳＡＭＰＬＥ．ＣＯ．ＪＰ") == "sample.co.jp"
    assert normalise_domain("例え.jp") == "xn--r8jz45g.jp"
    assert normalise_email("Taro@例え.JP") == "taro@xn--r8jz45g.jp"
    # IDNA 2008: ß is a letter of its own, not "ss" (fass.de is another domain)
    assert normalise_email("hans@faß.de") == "hans@xn--fa-hia.de"
    assert normalise_domain("https://www.Straße.de/kontakt") == "xn--strae-oqa.de"
    for bad in ("localhost", "http://", "no spaces.example com"):
        with pytest.raises(ValueError):
            normalise_domain(bad)



def test_a_web_address_pasted_whole_gives_its_host_however_long_its_path() -> None:
    page = "https://www.sample.co.jp/company/" + "about/" * 60 + "?utm_source=newsletter"
    lead = LeadSubmission.model_validate({"email": "taro@gmail.com", "company_domain": page})
    assert len(page) > 253 and lead.company_domain == "sample.co.jp"
    with pytest.raises(ValidationError, match="at most 253 characters"):
        LeadSubmission.model_validate({"email": "taro@gmail.com",
                                       "company_domain": ".".join(["a" * 60] * 5) + ".jp"})

def test_free_mail_accounts_go_by_company_domain_then_name_then_person() -> None:
    corporate = account_for("a@sample.co.jp", "株式会社サンプル", None)
    assert (corporate.account_key, corporate.domain, corporate.free_mail) == (
        "domain:sample.co.jp", "sample.co.jp", False)
    by_site = account_for("a@gmail.com", "株式会社サンプル", "sample.co.jp")
    assert (by_site.account_key, by_site.free_mail) == ("domain:sample.co.jp", True)
    by_name = account_for("a@i.softbank.jp", "株式会社サンプル", None)
    assert (by_name.account_key, by_name.domain) == ("name:サンプル", None)
    assert account_for("a@ezweb.ne.jp", None, None).account_key == "person:a@ezweb.ne.jp"
    assert account_for("a@gmail.com", "株式会社", None).account_key == "person:a@gmail.com"


@pytest.mark.parametrize(("one", "other"), [
    ("Zinc Corporation", "Z Inc."), ("Sinclair Ltd", "Slair"), ("Lincoln Co., Ltd.", "Loln"),
    ("Incognito", "Ognito"), ("Hillcorp Japan", "Hill Japan"),
    ("Lincoln Electric", "Loln Electric"), ("Princeton Labs", "Preton Labs"), ("Kinc", "K"),
    ("Corporate Planning", "Orate Planning"),
])
def test_latin_legal_forms_inside_a_word_are_part_of_the_name(one: str, other: str) -> None:
    assert account_key("a@gmail.com", one) != account_key("b@gmail.com", other)


@pytest.mark.parametrize("name", [
    "Sample", "Sample Inc.", "SAMPLE INC", "Sample, Inc.", "Sample Co., Ltd.", "Sample Co.,Ltd.",
    "Sample Co. Ltd.", "Sample Ltd", "Sample LLC", "Sample Corporation", "Sample Corp.",
    "Sample K.K.", "K.K. Sample", "Ｓａｍｐｌｅ　Ｉｎｃ．",
])
def test_latin_legal_forms_are_dropped_as_whole_words_at_either_end(name: str) -> None:
    assert company_key(name) == "sample"


@pytest.mark.parametrize(("name", "key"), [
    ("Acme Inc. Japan", "acmejapan"), ("Acme Corp. Japan Branch", "acmejapanbranch"),
    ("Sample LLC Japan", "samplejapan"),
    ("Sample Holdings Corporation Japan", "sampleholdingsjapan"),
    ("Sample Co., Ltd. Tokyo Office", "sampletokyooffice"), ("Acme, Inc., Japan", "acmejapan"),
    ("Sample Inc. (Japan)", "sample(japan)"), ("ACME, Inc. (Japan)", "acme(japan)"),
    ("Sample (Japan) Inc.", "sample(japan)"),
    ("Ｓａｍｐｌｅ Ｉｎｃ．（Ｊａｐａｎ）", "sample(japan)"),
    ("Sample Inc. Ltd.", "sample"), ("Sample, Inc., Ltd., K.K.", "sample"),
    ("Ltd. Co., Ltd. Sample", "sample"), ("サンプル株式会社 Inc.", "サンプル"),
    ("Lincoln Electric", "lincolnelectric"), ("Sinclair", "sinclair"),
    ("Acme Corp.Japan", "acmejapan"), ("Сбербанк Inc.", "сбербанк"), ("Zéinc", "zéinc"),
])
def test_latin_legal_forms_are_dropped_as_whole_words_anywhere_even_stacked(
        name: str, key: str) -> None:
    # Dropped only at either end, "Acme Inc. Japan" was another company than "Acme Japan".
    assert company_key(name) == key


@pytest.mark.parametrize(("name", "key"), [
    ("アクメInc.", "アクメ"), ("アクメ Inc.", "アクメ"), ("Inc.アクメ", "アクメ"),
    ("アクメCo.,Ltd.", "アクメ"), ("アクメK.K.東京", "アクメ東京"),
    ("アクメ株式会社Inc.", "アクメ"), ("アクメZinc", "アクメzinc"),
    ("アクメLincoln", "アクメlincoln"), ("Princetonラボ", "princetonラボ"),
    ("アクメCorporate", "アクメcorporate"), ("Sinclairジャパン", "sinclairジャパン"),
])
def test_latin_legal_forms_next_to_japanese_text_are_words_of_their_own(
        name: str, key: str) -> None:
    # Japanese writes no spaces: "アクメInc." kept its "inc." where "アクメ Inc." lost it.
    assert company_key(name) == key


@pytest.mark.parametrize(("name", "key"), [
    ("Acme (Inc.)", "acme"), ("Acme(Inc.)", "acme"), ("Acme【Inc.】", "acme"),
    ("Acme ( Inc., Ltd. )", "acme"), ("Acme (Inc.) Japan", "acmejapan"),
    ("Acme “Inc”", "acme"), ("Acme Inc. (K.K.)", "acme"), ("Acme (Inc./Ltd.) Japan", "acmejapan"),
    ("Sample (Japan, Inc.)", "sample(japan)"), ("Sample (Inc., Japan)", "sample(japan)"),
    ("アクメ（株式会社）", "アクメ"), ("アクメ【株式会社】", "アクメ"), ("Acme ()", "acme()"),
    ("Acme・Inc.", "acme"), ("Acme Inc./", "acme"), ("Inc.・Acme", "acme"),
    ("株式会社・アクメ", "アクメ"), ("アクメ、株式会社", "アクメ"), ("(Inc.-Acme)", "(acme)"),
    ("Acme Inc.・Japan", "acme・japan"), ("Acme・Inc.・Japan", "acme・japan"),
    ("Acme Inc./Japan", "acme/japan"), ("Acme-Inc-Tokyo", "acme-tokyo"),
    ("Acme Inc.・(Ltd.)・Japan", "acme・japan"), ("アクメ株式会社・東京支店", "アクメ・東京支店"),
    ("アクメ株式会社、東京支店", "アクメ、東京支店"), ("Acme・Japan", "acme・japan"),
    ("アクメ・ジャパン株式会社", "アクメ・ジャパン"), ("Acme, Inc., Japan", "acmejapan"),
])
def test_brackets_and_marks_a_dropped_form_leaves_empty_or_dangling_go_with_it(
        name: str, key: str) -> None:
    # "Acme (Inc.)" was "acme()", another company than "Acme"; a mark between two parts of
    # the name stays once, as it would have stood without the form ("Acme・Japan").
    assert company_key(name) == key


@pytest.mark.parametrize("name", [
    "Acme & Co. Ltd", "Acme and Co.", "Acme Co., Ltd.", "ACME", "Acme & Co.", "Acme Co.",
    "Acme and Company", "Acme Company", "Acme&Co.,Ltd.", "Acme & Company, Inc.",
    "ＡＣＭＥ　＆　ＣＯ．", "Acme AND CO",
])
def test_a_connector_before_a_legal_form_goes_with_it(name: str) -> None:
    # "Acme & Co. Ltd" was "acme&": the "&" stayed once "Co. Ltd" was dropped.
    assert company_key(name) == company_key("Acme") == "acme"


@pytest.mark.parametrize(("name", "key"), [
    ("AT&T", "at&t"), ("AT&T Inc.", "at&t"), ("Johnson & Johnson", "johnson&johnson"),
    ("Johnson & Johnson K.K.", "johnson&johnson"), ("Tom and Jerry Inc.", "tomandjerry"),
    ("Procter & Gamble Co.", "procter&gamble"), ("Sand & Co.", "sand"),
    ("Brand Inc.", "brand"), ("Acme & Co. Japan", "acmejapan"), ("Co-op Inc.", "co-op"),
    ("Acme Co", "acmeco"), ("Costco Co., Ltd.", "costco"), ("Acme &", "acme&"),
    ("Sample.co.jp", "sample.co.jp"), ("アクメ&Co.", "アクメ"),
])
def test_a_connector_is_dropped_only_before_a_legal_form(name: str, key: str) -> None:
    # An "&" or "and" inside a name is part of it, a dangling one too ("Acme &").
    assert company_key(name) == key


def test_japanese_legal_forms_are_dropped_wherever_they_stand() -> None:
    for name in ("株式会社サンプル", "サンプル株式会社", "（株）サンプル", "㈱サンプル",
                 "サンプル有限会社", "合同会社サンプル"):
        assert company_key(name) == "サンプル", name


@given(HIRAGANA_KATAKANA_KANJI)
def test_japanese_company_names_are_their_own_account_keys(name: str) -> None:
    assume("会社" not in name)  # no legal form (株式会社, 有限会社, ...) to drop
    assume(name not in PLACEHOLDER_COMPANIES)  # "個人", "不明": no company's name
    assert account_key("a@gmail.com", name) == f"name:{name}"


# Any text, weighted to what folding or NFKC lengthens and to legal forms.
COMPANY_NAMES = st.lists(
    st.one_of(st.sampled_from(["İ", "ẞ", "ŉ", "ﬃ", "㍿", " Inc.", "(株)", "Ltd "]),
              st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    min_size=1, max_size=200).map("".join)


@given(COMPANY_NAMES)
def test_every_accepted_company_name_gives_an_account_the_event_can_carry(name: str) -> None:
    try:
        lead = LeadSubmission.model_validate({"email": "a@gmail.com", "company": name})
    except ValidationError:
        return
    account = account_for(lead.email, lead.company, None)
    assert len(account.account_key) <= 320
    # Validated afresh from its fields, as a consumer reads the event.
    assert Account.model_validate(account.model_dump()) == account


def test_company_names_that_grow_when_folded_keep_distinct_stable_keys() -> None:
    # "İ" folds to two characters: 200 of them made a key longer than the event allows.
    long_name, other = "İ" * 200, "İ" * 199 + "I"
    assert LeadSubmission.model_validate({"email": "a@gmail.com", "company": long_name})
    key = account_for("a@gmail.com", long_name, None).account_key
    assert key.startswith("name:i̇i̇") and len(key) == 320
    assert key == account_key("b@gmail.com", long_name)
    assert key != account_key("b@gmail.com", other)
    assert company_key("STRASSE") == company_key("Straße"), "case-folded, not just lower-cased"


def test_a_decoy_event_id_is_the_same_for_a_repeat_and_looks_like_a_real_one() -> None:
    # A new decoy id for each repeat told a bot that its honeypot requests were ignored.
    by_key = decoy_event_id("key_1", "form-1", b'{"email":"a@b.jp"}')
    assert by_key == decoy_event_id("key_1", "form-1", b'{"email":"other@b.jp"}')
    by_content = decoy_event_id("key_1", None, b'{"email":"a@b.jp"}')
    assert by_content == decoy_event_id("key_1", None, b'{"email":"a@b.jp"}')
    assert len({by_key, by_content, decoy_event_id("key_1", None, b"{}"),
                decoy_event_id("key_2", "form-1", b'{"email":"a@b.jp"}')}) == 4
    assert uuid.UUID(by_key).version == uuid.UUID(by_content).version == 4, "as stored ids"


def test_the_event_profile_leaves_out_what_only_ingest_keeps() -> None:
    profile = profile_of({"email": "a@b.jp", "name": "山田 太郎", "company_domain": "b.jp",
                          "consent": True})
    assert profile.model_dump(exclude_none=True) == {"email": "a@b.jp", "name": "山田 太郎"}


def test_a_webinar_registration_is_captured_as_a_form_not_as_attendance() -> None:
    assert touchpoint_type_for("webinar.registration") is TouchpointType.FORM_SUBMISSION
    assert touchpoint_type_for("webinar.product_demo") is TouchpointType.WEBINAR_PRODUCT_DEMO


def test_submissions_are_normalised_as_they_validate() -> None:
    lead = LeadSubmission.model_validate({
        "email": "Ｈａｎａｋｏ＠Ｓａｍｐｌｅ．ｃｏ．ｊｐ", "name": " 鈴木　花子 ",
        "company": "ｻﾝﾌﾟﾙ株式会社", "phone": "0312345678", "company_domain": "www.sample.co.jp",
        "title": "   "})
    assert (lead.email, lead.name, lead.company) == ("hanako@sample.co.jp", "鈴木 花子",
                                                    "サンプル株式会社")
    assert (lead.phone, lead.company_domain, lead.title) == ("+81312345678", "sample.co.jp",
                                                             None)
    assert lead.touchpoint.type is TouchpointType.FORM_SUBMISSION


def test_invalid_submissions_name_every_bad_field() -> None:
    with pytest.raises(ValidationError) as raised:
        LeadSubmission.model_validate({"email": "nobody", "phone": "nope", "colour": "red",
                                       "touchpoint": {"type": "page_view.pricing",
                                                      "occurred_at": "2026-11-21T10:00:00"}})
    assert {error["loc"] for error in raised.value.errors()} == {
        ("email",), ("phone",), ("colour",), ("touchpoint", "occurred_at")}
    with pytest.raises(ValidationError) as activity:
        ActivitySubmission.model_validate({"email": "a@b.jp", "type": "page_view.secret"})
    assert [error["loc"] for error in activity.value.errors()] == [("type",)]


@pytest.mark.parametrize(("fields", "bad"), [
    ({"title": "…" * 200}, ("title",)),  # "…" is "..." in NFKC: 600 characters
    ({"company": "㈱" * 200}, ("company",)),
    ({"employee_band": "㍿" * 32}, ("employee_band",)),
    ({"touchpoint": {"asset_id": "…" * 100}}, ("touchpoint", "asset_id")),
    ({"company_domain": ".".join(["ü" * 20] * 11) + ".jp"}, ("company_domain",)),  # punycode
    ({"email": "x" * 245 + "@gmail.com"}, ("email",)),  # "person:" + it would not fit
    ({"name": "山田\x00太郎"}, ("name",)),
    ({"email": "a\x00b@example.co.jp"}, ("email",)),
    ({"touchpoint": {"occurred_at": "9999-12-31T23:00:00-12:00"}},  # after 9999 in UTC
     ("touchpoint", "occurred_at")),
])
def test_what_would_not_fit_or_could_not_be_stored_once_normalised_is_refused(
        fields: dict[str, object], bad: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        LeadSubmission.model_validate({"email": "a@example.co.jp", **fields})
    assert [error["loc"] for error in raised.value.errors()] == [bad]


def test_partner_notes_are_limited_once_normalised_too() -> None:
    with pytest.raises(ValidationError) as raised:
        ActivitySubmission.model_validate({
            "email": "a@example.co.jp", "type": "appointment.set",
            "partner_notes": {"need": "…" * 500, "temperature": "㍿" * 32}})
    assert {error["loc"] for error in raised.value.errors()} == {
        ("partner_notes", "need"), ("partner_notes", "temperature")}


def test_the_longest_accepted_submission_fits_the_captured_event() -> None:
    submission = LeadSubmission.model_validate({
        "email": "x" * 244 + "@gmail.com", "company": "㈱" * 66, "title": "…" * 66,
        "industry": "ﷺ" * 5})
    # Each builds a model of the event, which would refuse what does not fit.
    assert account_for(submission.email, None, None).account_key == "person:" + submission.email
    assert account_for(submission.email, submission.company, None).company_name
    assert profile_of(submission.model_dump()).title == "." * 198
