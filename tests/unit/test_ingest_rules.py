"""Ingest's normalisation and identity rules."""

from __future__ import annotations

from services.ingest.domain import (
    account_key,
    company_key,
    is_free_mail,
    lead_id_for,
    normalise_email,
    normalise_text,
)


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
