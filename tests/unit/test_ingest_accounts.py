"""Which account a lead joins: shared web hosts, placeholder company names, legal forms."""

from __future__ import annotations

import pytest

from services.ingest.domain import account_for, account_key, company_key, normalise_domain
from services.ingest.submissions import LeadSubmission


@pytest.mark.parametrize("website", [
    "https://www.facebook.com/cafe.a", "https://m.facebook.com/salonb/", "fb.com/cafe.a",
    "https://www.instagram.com/cafe_a/", "https://www.linkedin.com/company/cafe-a",
    "https://x.com/cafe_a", "twitter.com/cafe_a", "https://www.youtube.com/@cafe_a",
    "https://www.tiktok.com/@cafe_a", "https://page.line.me/cafe_a", "https://lin.ee/cafe",
    "https://lit.link/cafea", "https://linktr.ee/cafea",
    "https://ameblo.jp/salon-b/", "https://note.com/cafe_a", "http://cafea.blog.fc2.com/",
    "cafea.fc2.com", "https://cafe-a.blogspot.com/", "https://cafea.wordpress.com/",
    "https://cafe-a.hatenablog.com/", "https://cafe-a.hatenablog.jp/",
    "https://sites.google.com/view/cafe-a", "https://cafea.wixsite.com/home",
    "https://cafe-a.jimdofree.com/", "https://cafe-a.jimdosite.com/",
    "https://cafe-a.studio.site/", "https://cafea.base.shop/", "https://cafea.stores.jp/",
    "https://peraichi.com/landing_pages/view/cafea", "https://cafea.business.site/",
    "https://tabelog.com/tokyo/A1301/A130101/13000001/", "https://beauty.hotpepper.jp/slnH000000/",
    "https://www.wantedly.com/companies/cafe-a", "https://prtimes.jp/main/html/searchrlp/company_id/1",
    "https://www.threads.net/@cafe_a", "https://github.com/cafe-a", "https://medium.com/@cafe_a",
    "https://g.page/cafe-a", "https://maps.app.goo.gl/abc", "https://maps.google.com/?cid=1",
    "https://bit.ly/cafe-a",
])
def test_a_page_on_a_shared_host_is_no_company_domain(website: str) -> None:
    # cafe.a@gmail.com and salon.b@yahoo.co.jp, each with a Facebook page as web site, were
    # both "domain:facebook.com": one account of strangers, one owner, one committee.
    site = normalise_domain(website)
    by_name = account_for("cafe.a@gmail.com", "Cafe A", site)
    assert (by_name.account_key, by_name.domain, by_name.free_mail) == ("name:cafea", None, True)
    assert account_key("salon.b@yahoo.co.jp", None, site) == "person:salon.b@yahoo.co.jp"


def test_a_company_domain_is_no_shared_host_for_sharing_a_suffix() -> None:
    for site in ("acme-note.com", "notfacebook.com", "facebook.com.example.co.jp",
                 "google.com", "line.co.jp"):
        assert account_key("a@gmail.com", "Acme", site) == f"domain:{site}", site


@pytest.mark.parametrize("company", [
    "-", "ー", "・", ".", "()", "N/A", "n/a", "N.A.", "なし", "無し", "特になし", "（なし）",
    "個人", "none", "None.", "nil", "NULL", "unknown", "不明", "TBD", "－", "---",
    "ーー", "…", "?", "〃", "々",
])
def test_a_placeholder_company_name_identifies_no_account(company: str) -> None:
    # Forms require a company: "-", "なし" or "個人" made every lead that wrote it, from any
    # free-mail address, one account (as "株式会社" alone already did not).
    lead = LeadSubmission.model_validate({"email": "a@gmail.com", "company": company})
    assert lead.company
    assert account_key(lead.email, lead.company) == "person:a@gmail.com"
    assert account_for(lead.email, lead.company, None).company_name == lead.company


@pytest.mark.parametrize(("company", "key"), [
    ("個人事業主", "name:個人事業主"), ("自営業", "name:自営業"), ("コーヒー", "name:コーヒー"),
    ("なし農園", "name:なし農園"), ("3M", "name:3m"), ("N/A Labs", "name:n/alabs"),
    ("Testa Inc.", "name:testa"), ("Nonet", "name:nonet"), ("佐々木商店", "name:佐々木商店"),
    ("TEST Inc.", "name:test"),  # a company's name, not a placeholder
])
def test_a_name_that_only_looks_like_a_placeholder_is_a_company(company: str, key: str) -> None:
    assert account_key("a@gmail.com", company) == key


@pytest.mark.parametrize(("name", "key"), [
    ("Acme Limited", "acme"), ("ACME LIMITED", "acme"), ("Acme Co., Limited", "acme"),
    ("Acme Company Limited", "acme"), ("Acme Limited (Japan)", "acme(japan)"),
    ("Acme Pte. Ltd.", "acme"), ("Acme Pte Ltd", "acme"), ("Acme Pte. Limited", "acme"),
    ("Acme Pty Ltd", "acme"), ("Acme Pvt. Ltd.", "acme"), ("Acme Private Limited", "acme"),
    ("Acme PLC", "acme"), ("Acme plc", "acme"), ("Acme p.l.c.", "acme"),
    ("Acme GmbH", "acme"), ("Acme Japan GmbH", "acmejapan"), ("Acme (GmbH)", "acme"),
    ("アクメ合同会社", "アクメ"), ("アクメ(同)", "アクメ"), ("アクメ（同）", "アクメ"),
    ("(同)アクメ", "アクメ"), ("アクメ合名会社", "アクメ"), ("アクメ(名)", "アクメ"),
    ("㈴アクメ", "アクメ"), ("アクメ合資会社", "アクメ"), ("アクメ(資)", "アクメ"),
    ("㈾アクメ", "アクメ"), ("アクメ(同)・東京支店", "アクメ・東京支店"),
])
def test_more_legal_forms_are_dropped_like_the_others(name: str, key: str) -> None:
    # "Acme Limited" was "acmelimited", another company than "Acme Ltd"; "Acme Pte. Ltd."
    # left "acmepte."; "アクメ(同)" stayed as written while "アクメ合同会社" was "アクメ".
    assert company_key(name) == key


@pytest.mark.parametrize(("name", "key"), [
    ("Unlimited Inc.", "unlimited"), ("Limitless", "limitless"), ("Splc", "splc"),
    ("Pte Partners", "ptepartners"), ("Private Labs Ltd.", "privatelabs"),
    ("AG Partners", "agpartners"), ("同志社", "同志社"), ("アクメ(同志)", "アクメ(同志)"),
    ("Limited Run Games", "limitedrungames"),  # "Limited" ends a name where it is a form
])
def test_new_legal_forms_inside_a_word_or_name_are_part_of_it(name: str, key: str) -> None:
    assert company_key(name) == key
