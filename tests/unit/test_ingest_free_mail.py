"""Free-mail domains: consumer and carrier addresses identify no company, subdomains too."""

from __future__ import annotations

import pytest

from services.ingest.domain import account_for, account_key, is_free_mail


@pytest.mark.parametrize("address", [
    "taro@dj.pdx.ne.jp",  # Willcom (Y!mobile PHS): always a two-letter subdomain
    "taro@t.vodafone.ne.jp",  # SoftBank's former Vodafone addresses, still in use
    "taro@biz.ezweb.ne.jp",  # au
    "taro@sea.ocn.ne.jp",  # OCN gives most subscribers a subdomain
    "taro@ab.so-net.ne.jp",
])
def test_an_address_at_a_subdomain_of_a_free_mail_domain_is_free_mail(address: str) -> None:
    # They were keyed by their domain: strangers at one carrier became one account (one
    # owner, one buying committee) and lost scoring's free-mail penalty.
    account = account_for(address, "株式会社ミナト電子", None)
    assert account.free_mail
    assert account.account_key == "name:ミナト電子"
    assert account_key(address, None) == f"person:{address}"


def test_a_company_domain_is_not_free_mail_for_sharing_a_suffix() -> None:
    assert not is_free_mail("ne.jp")
    assert not is_free_mail("xdocomo.ne.jp"), "a subdomain is whole labels only"
    assert not is_free_mail("docomo.ne.jp.example.com")
    assert account_key("a@sample.co.jp", "x") == "domain:sample.co.jp"


@pytest.mark.parametrize("domain", [
    "qq.com", "foxmail.com", "163.com", "126.com", "yeah.net", "sina.com", "sohu.com",
    "naver.com", "daum.net", "hanmail.net",
    "gmx.de", "gmx.net", "gmx.at", "gmx.com", "web.de", "t-online.de", "freenet.de",
    "hotmail.de", "yahoo.de",
    "yahoo.co.uk", "hotmail.co.uk", "live.co.uk", "outlook.co.uk", "btinternet.com",
    "hotmail.fr", "yahoo.fr", "orange.fr", "outlook.fr", "free.fr", "laposte.net", "wanadoo.fr",
    "sfr.fr",
    "libero.it", "virgilio.it", "yahoo.it", "hotmail.it", "yahoo.es", "hotmail.es",
    "mail.ru", "yandex.ru", "yandex.com",
    "yahoo.com.tw", "yahoo.com.hk", "rediffmail.com",
    "yahoo.ca", "yahoo.com.au", "bigpond.com",
    "terra.com.br", "uol.com.br", "bol.com.br",
    "zoho.com", "proton.me", "tutanota.com",
])
def test_big_international_mail_providers_are_free_mail(domain: str) -> None:
    # They were keyed by their domain: a@qq.com and b@qq.com, strangers, became one account
    # (one owner, one buying committee) and lost scoring's free-mail penalty.
    account = account_for(f"a@{domain}", "株式会社ミナト電子", None)
    assert (account.account_key, account.free_mail) == ("name:ミナト電子", True)
    assert account_key(f"a@{domain}", None) != account_key(f"b@{domain}", None)
