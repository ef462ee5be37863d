"""``baton demo``: realistic capture traffic, and the generator benchmarks reuse.

The stream mixes web-form leads, marketing-automation activities (page views,
downloads, webinars, e-mails), partner appointments with hearing notes, and hot
leads (a demo or quote request from a manager or executive at an ideal-customer
company), Japanese and English alike. It opens with a hot lead, so a user sees a
score, a hand-off and an alert within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from baton.arguments import positive_number, whole_number

DEFAULT_URL = "http://127.0.0.1:8001"
# The key `baton run` bootstraps when BATON_INGEST_API_KEYS is not set.
LOCAL_DEMO_KEY = "local-demo-key-change-me"


@dataclass(frozen=True)
class Company:
    """A company a lead works at; ``icp`` when it fits the ideal customer profile."""

    name: str
    domain: str
    industry: str
    employee_band: str
    region: str
    japanese: bool

    @property
    def icp(self) -> bool:
        """Return True for the industries and sizes the scoring model favours."""
        return (self.industry in ICP_INDUSTRIES
                and self.employee_band in ("100-499", "500-999", "1000+"))


ICP_INDUSTRIES = frozenset({"製造業", "金融", "ソフトウェア", "物流", "manufacturing", "software",
                            "finance", "logistics"})
COMPANIES = (
    Company("株式会社東和精機", "towa-seiki.co.jp", "製造業", "500-999", "愛知県", True),
    Company("北斗ソフトウェア株式会社", "hokuto-soft.jp", "ソフトウェア", "100-499", "東京都",
            True),
    Company("株式会社日本橋ロジスティクス", "nihonbashi-logi.co.jp", "物流", "1000+", "東京都",
            True),
    Company("さくら信用金庫", "sakura-shinkin.jp", "金融", "500-999", "大阪府", True),
    Company("株式会社みなと電子工業", "minato-denshi.co.jp", "製造業", "1000+", "神奈川県", True),
    Company("有限会社青葉商店", "aoba-shoten.jp", "小売業", "10-49", "宮城県", True),
    Company("学校法人若葉学園", "wakaba-gakuen.ac.jp", "教育", "100-499", "福岡県", True),
    Company("ＡＢＣ商事株式会社", "abc-shoji.co.jp", "卸売業", "50-99", "東京都", True),
    Company("Northwind Robotics Inc.", "northwind-robotics.com", "manufacturing", "500-999",
            "California", False),
    Company("Bluefin Capital Ltd.", "bluefin-capital.co.uk", "finance", "100-499", "London",
            False),
    Company("Orbital Systems LLC", "orbital-systems.io", "software", "1000+", "Washington",
            False),
    Company("Maple Street Bakery", "maplestreetbakery.com", "retail", "1-9", "Ontario", False),
)
JP_FAMILY = (("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"),
             ("伊藤", "ito"), ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"))
JP_GIVEN = (("太郎", "taro"), ("花子", "hanako"), ("健太", "kenta"), ("美咲", "misaki"),
            ("翔太", "shota"), ("陽菜", "hina"), ("大輔", "daisuke"), ("さくら", "sakura"))
EN_GIVEN = ("Emma", "Liam", "Olivia", "Noah", "Ava", "James", "Sophia", "Lucas")
EN_FAMILY = ("Smith", "Johnson", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor")
# (title, seniority) pairs; seniority as the scoring model reads titles.
JP_TITLES = (("代表取締役社長", "executive"), ("執行役員", "executive"), ("部長", "manager"),
             ("課長", "manager"), ("主任", "staff"), ("担当", "staff"))
EN_TITLES = (("CEO", "executive"), ("VP of Sales", "executive"), ("IT Manager", "manager"),
             ("Head of Marketing", "manager"), ("Engineer", "staff"), ("Analyst", "staff"))
JP_DEPARTMENTS = ("情報システム部", "営業部", "マーケティング部", "製造部", "経営企画部")
EN_DEPARTMENTS = ("IT", "Sales", "Marketing", "Operations", "Finance")
FREE_MAIL = ("gmail.com", "yahoo.co.jp", "docomo.ne.jp", "outlook.com")
PARTNERS = ("アポ代行パートナーズ", "Callwise Japan")
CHALLENGES = ("紙の受発注が多く、営業の入力工数が月40時間を超えている",
              "拠点ごとに顧客管理がばらばらで、引き継ぎ漏れが起きている",
              "Leads from events are followed up days late and go cold",
              "Forecasts are built in spreadsheets and nobody trusts them")
COMPETITORS = ("Salesforce", "HubSpot", "kintone", "Zoho CRM", None)
CAMPAIGNS = ("2026-autumn-webinar", "dx-whitepaper", "trade-show-tokyo", "newsletter-nov")
UTM_SOURCES = (("google", "cpc"), ("facebook", "paid_social"), ("newsletter", "email"),
               ("partner", "referral"), (None, None))
PAGES = (("page_view.pricing", "/pricing"), ("page_view.case_study", "/cases/towa-seiki"),
         ("page_view.blog", "/blog/sales-dx"), ("page_view.other", "/about"))
DOWNLOADS = (("download.implementation_guide", "guide-implementation"),
             ("download.industry_report", "report-manufacturing-2026"),
             ("download.beginner_guide", "guide-crm-basics"))
WEBINARS = (("webinar.product_demo", "webinar-demo-1126"),
            ("webinar.trend_seminar", "webinar-trends-1203"),
            ("webinar.archive", "archive-dx-2026"))


@dataclass(frozen=True)
class Person:
    """A lead as a web form would describe them."""

    email: str
    name: str
    company: Company
    title: str
    seniority: str
    department: str
    phone: str | None

    def contact(self) -> dict[str, Any]:
        """Return the identity and profile fields of a submission."""
        body: dict[str, Any] = {
            "email": self.email, "name": self.name, "company": self.company.name,
            "title": self.title, "department": self.department,
            "industry": self.company.industry, "employee_band": self.company.employee_band,
            "region": self.company.region,
        }
        if self.phone:
            body["phone"] = self.phone
        if self.email.rsplit("@", 1)[1] != self.company.domain:
            body["company_domain"] = self.company.domain
        return body


@dataclass(frozen=True)
class Submission:
    """One request of the stream: where it goes, its JSON body, and whether it is a hot lead."""

    path: str
    body: dict[str, Any]
    hot: bool = False

    @property
    def kind(self) -> str:
        """Return what the request is, for summaries: the touchpoint or activity type."""
        if self.path == "/v1/leads":
            return str(self.body["touchpoint"]["type"])
        return str(self.body["type"])


class TrafficGenerator:
    """An endless, seeded stream of realistic submissions; the same seed gives the same stream."""

    def __init__(self, seed: int = 0, *, hot_share: float = 0.1,
                 now: datetime | None = None) -> None:
        self._random = random.Random(seed)
        self._hot_share = hot_share
        self._now = now or datetime.now(UTC)
        self._people: list[Person] = []
        self._serial = 0
        self._run = f"{seed:x}{self._random.getrandbits(24):06x}"

    def __iter__(self) -> Iterator[Submission]:
        yield self.hot_lead()  # something to see at once
        while True:
            yield self.next()

    def next(self) -> Submission:
        """Return the next submission of the mix."""
        roll = self._random.random()
        if roll < self._hot_share or not self._people:
            return self.hot_lead() if roll < self._hot_share else self.lead_form()
        if roll < self._hot_share + 0.25:
            return self.lead_form()
        if roll < self._hot_share + 0.35:
            return self.partner_appointment()
        return self.activity()

    def person(self, *, icp: bool | None = None, seniority: str | None = None,
               free_mail: bool = False) -> Person:
        """Return a new person, optionally at an ICP company or of a given seniority."""
        self._serial += 1
        pick = self._random.choice
        company = pick([c for c in COMPANIES if icp is None or c.icp == icp])
        titles = JP_TITLES if company.japanese else EN_TITLES
        title, level = pick([t for t in titles if seniority is None or t[1] == seniority])
        if company.japanese:
            (family, family_latin), (given, given_latin) = pick(JP_FAMILY), pick(JP_GIVEN)
            name, local = f"{family} {given}", f"{given_latin}.{family_latin}"
            department = pick(JP_DEPARTMENTS)
            phone = pick((f"03-{self._digits(4)}-{self._digits(4)}",
                          f"０９０－{self._digits(4)}－{self._digits(4)}",  # full-width on purpose
                          f"06-{self._digits(4)}-{self._digits(4)}", None))
        else:
            given, family = pick(EN_GIVEN), pick(EN_FAMILY)
            name, local = f"{given} {family}", f"{given}.{family}".lower()
            department = pick(EN_DEPARTMENTS)
            phone = pick((f"+1 415 555 01{self._digits(2)}", None))
        domain = pick(FREE_MAIL) if free_mail else company.domain
        email = f"{local}.{self._run}{self._serial}@{domain}"
        person = Person(email, name, company, title, level, department, phone)
        self._people.append(person)
        return person

    def lead_form(self, person: Person | None = None) -> Submission:
        """Return a web-form fill: a document request or a newsletter sign-up, with UTMs."""
        person = person or self.person(free_mail=self._random.random() < 0.1)
        utm_source, utm_medium = self._random.choice(UTM_SOURCES)
        asset_type, asset = self._random.choice(DOWNLOADS)
        body = {**person.contact(), "consent": self._random.random() < 0.8, "source": "web",
                "touchpoint": {"type": asset_type, "asset_id": asset,
                               "occurred_at": self._when()}}
        if utm_source:
            body.update(utm_source=utm_source, utm_medium=utm_medium,
                        utm_campaign=self._random.choice(CAMPAIGNS))
        return Submission("/v1/leads", body)

    def hot_lead(self) -> Submission:
        """Return a demo or quote request from a manager or executive at an ICP company."""
        person = self.person(icp=True, seniority=self._random.choice(("manager", "executive")))
        inquiry = self._random.choice(("inquiry.demo_request", "inquiry.quote_request"))
        body = {**person.contact(), "consent": True, "source": "web",
                "campaign": self._random.choice(CAMPAIGNS),
                "touchpoint": {"type": inquiry, "occurred_at": self._when(minutes=0)}}
        return Submission("/v1/leads", body, hot=True)

    def activity(self) -> Submission:
        """Return a marketing-automation activity of someone already known."""
        person = self._random.choice(self._people)
        family = self._random.choice(("page", "page", "download", "webinar", "email"))
        body: dict[str, Any] = {"email": person.email, "occurred_at": self._when()}
        if family == "page":
            body["type"], body["asset_id"] = self._random.choice(PAGES)
        elif family == "download":
            body["type"], body["asset_id"] = self._random.choice(DOWNLOADS)
        elif family == "webinar":
            webinar, asset = self._random.choice(WEBINARS)
            body["asset_id"] = asset
            body["type"] = self._random.choice(("webinar.registration", webinar))
            body["interacted"] = body["type"] == webinar and self._random.random() < 0.3
        else:
            body["type"] = self._random.choice(("email.open", "email.open", "email.click"))
            body["asset_id"] = self._random.choice(CAMPAIGNS)
            body["campaign"] = body["asset_id"]
        return Submission("/v1/activities", body)

    def partner_appointment(self) -> Submission:
        """Return an appointment set by a partner, with hearing notes (BANT, temperature)."""
        person = self.person(icp=self._random.random() < 0.7)
        pick = self._random.choice
        notes = {
            "partner": pick(PARTNERS), "challenges": pick(CHALLENGES),
            "background": "展示会で名刺交換、その後の電話で課題を伺った"
            if person.company.japanese else "Met at a trade show; followed up by phone",
            "competitors": pick(COMPETITORS),
            "budget": pick(("確保済み (年間500万円)", "未定", "approved for FY2026", None)),
            "authority": pick((f"{person.title}が決裁者", "担当者のみ、上長の同席は未確認",
                               "CFO signs off", None)),
            "need": pick(CHALLENGES),
            "timeframe": pick(("今期中", "来期 (4月以降)", "within 3 months", None)),
            "temperature": pick(("hot", "warm", "cold")),
        }
        body = {**person.contact(), "type": "appointment.set", "occurred_at": self._when(),
                "partner_notes": {k: v for k, v in notes.items() if v is not None}}
        return Submission("/v1/activities", body)

    def lead_forms(self) -> Iterator[dict[str, Any]]:
        """Yield endless /v1/leads bodies of the mix (new people, fresh addresses)."""
        while True:
            submission = self.hot_lead() if self._random.random() < 0.2 else self.lead_form()
            yield submission.body

    def _digits(self, count: int) -> str:
        """Return ``count`` random digits, the first not 0 (no such subscriber numbers)."""
        return str(self._random.randrange(1, 10)) + "".join(
            str(self._random.randrange(10)) for _ in range(count - 1))

    def _when(self, minutes: int | None = None) -> str:
        """Return a recent time: now, or up to three days ago."""
        ago = minutes if minutes is not None else self._random.randrange(0, 3 * 24 * 60)
        return (self._now - timedelta(minutes=ago)).isoformat()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command to the ``baton`` parser."""
    demo = commands.add_parser("demo", help="post realistic traffic to a running stack")
    demo.add_argument("--url", default=DEFAULT_URL, help=f"ingest's address ({DEFAULT_URL})")
    demo.add_argument("--api-key", help="default: the first key of BATON_INGEST_API_KEYS, "
                      "else the local stack's demo key")
    demo.add_argument("--count", type=_count, default=200, help="requests to send (200)")
    demo.add_argument("--rate", type=_rate, default=20.0, help="requests a second (20)")
    demo.add_argument("--seed", type=int, default=None, help="repeat a stream exactly")


def _count(text: str) -> int:
    """Return ``text`` as a whole number of requests, at least 1."""
    return whole_number(text, low=1, high=None,
                        refusal="must be a whole number of requests, at least 1")


def _rate(text: str) -> float:
    """Return ``text`` as a finite number of requests a second above 0 (post_stream
    divides by it; a negative or infinite rate would mean no throttling at all)."""
    return positive_number(text, refusal="must be a number of requests a second above 0")


def default_api_key() -> str:
    """Return the key ``baton run`` gives ingest: the first of BATON_INGEST_API_KEYS."""
    configured = os.environ.get("BATON_INGEST_API_KEYS", "")
    first = configured.split(",")[0].partition("=")[2].strip()
    return first or LOCAL_DEMO_KEY


def run(arguments: argparse.Namespace) -> int:
    """Post the stream; return 0 when every request was accepted."""
    seed = arguments.seed if arguments.seed is not None else random.randrange(1 << 32)
    return asyncio.run(post_stream(arguments.url, arguments.api_key or default_api_key(),
                                   count=arguments.count, rate=arguments.rate, seed=seed))


async def post_stream(url: str, api_key: str, *, count: int, rate: float, seed: int) -> int:
    """Send ``count`` submissions at ``rate`` a second; print a summary; return the exit code."""
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    hot = 0
    started = time.monotonic()
    stream = iter(TrafficGenerator(seed))
    print(f"baton demo: {count} requests to {url} at {rate:g}/s (seed {seed})", flush=True)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": api_key},
                                 timeout=10) as client:
        for index in range(count):
            submission = next(stream)
            try:
                response = await client.post(submission.path, json=submission.body)
            except httpx.HTTPError as error:
                print(f"baton demo: cannot reach ingest at {url}: {error!r} "
                      "(is `make run` running?)", file=sys.stderr)
                return 1
            statuses[response.status_code] += 1
            if response.status_code != 202:
                print(f"  {submission.path} -> {response.status_code} {response.text[:300]}",
                      file=sys.stderr)
                if response.status_code in (401, 403):
                    return 1
            kinds[submission.kind] += 1
            hot += submission.hot
            if submission.hot and response.status_code == 202:
                print(f"  hot lead: {submission.body['name']} ({submission.body['company']}) "
                      f"{submission.kind}", flush=True)
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    print(f"baton demo: sent {count} in {time.monotonic() - started:.1f}s; "
          f"statuses {dict(sorted(statuses.items()))}; {hot} hot leads", flush=True)
    print("  " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()), flush=True)
    return 0 if statuses[202] == count else 1
