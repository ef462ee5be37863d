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
