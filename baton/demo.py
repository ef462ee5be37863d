"""``baton demo``: realistic capture traffic, and the generator benchmarks reuse.

The stream mixes web-form leads, marketing-automation activities (page views,
downloads, webinars, e-mails), partner appointments with hearing notes, and hot
leads (a demo or quote request from a manager or executive at an ideal-customer
company), Japanese and English alike. It opens with a hot lead, so a user sees a
score, a hand-off and an alert within seconds.

Before the stream, the demo gives routing a small sales organisation if it has no reps
(inside sales and field sales, through routing's own API); after it, the demo reps
accept, call and qualify a few of the hot leads, so hand-offs, SQLs and deals show too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from baton import registry
from baton.arguments import positive_number, whole_number

JST = timezone(timedelta(hours=9), "JST")  # partners give meeting times in Japan time
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
            "meeting_at": self._meeting_time(),
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

    def _meeting_time(self) -> str:
        """Return when a partner's appointment takes place: a working hour in Japan, one to
        seven days ahead, with its +09:00 offset as partners send it."""
        day = (self._now.astimezone(JST) + timedelta(days=self._random.randrange(1, 8))).date()
        hour = self._random.choice((10, 11, 14, 15, 16))
        return datetime(day.year, day.month, day.day, hour, tzinfo=JST).isoformat()

    def _when(self, minutes: int | None = None) -> str:
        """Return a recent time: now, or up to three days ago."""
        ago = minutes if minutes is not None else self._random.randrange(0, 3 * 24 * 60)
        return (self._now - timedelta(minutes=ago)).isoformat()


# --- the demo's sales organisation ---------------------------------------------------------


class DemoError(RuntimeError):
    """Routing or pipeline could not be reached, or answered what the demo cannot go on
    from."""


# Round the clock, every day, without public holidays: a demo shift, so that the demo reps
# are "working now" (routing assigns only to reps who are) whenever the demo runs. Routing
# still closes on the company's closed days (BATON_ROUTING_CLOSED_DAYS, 29 Dec - 3 Jan by
# default); leads wait in their team's queue then, as they would for real reps.
DEMO_SHIFT_STARTS, DEMO_SHIFT_ENDS = "00:00", "23:59:59.999999"
OVERSEAS = tuple(sorted({company.region for company in COMPANIES if not company.japanese}))


@dataclass(frozen=True)
class DemoRep:
    """A rep of the demo's sales organisation; ``regions`` is their territory (empty: none)."""

    rep_id: str
    name: str
    team: str
    email: str
    timezone: str = "Asia/Tokyo"
    regions: tuple[str, ...] = ()
    daily_capacity: int = 40

    def body(self) -> dict[str, Any]:
        """Return the rep as routing's ``PUT /v1/reps/{rep_id}`` takes it."""
        return {
            "name": self.name, "team": self.team, "email": self.email,
            "daily_capacity": self.daily_capacity,
            "working_hours": {"timezone": self.timezone, "starts": DEMO_SHIFT_STARTS,
                              "ends": DEMO_SHIFT_ENDS, "workdays": [1, 2, 3, 4, 5, 6, 7],
                              "holidays": None},
            "territory": {"regions": list(self.regions)} if self.regions else None,
        }

    def describe(self) -> str:
        """Return who the rep is and which leads they take, for the demo's summary."""
        if self.team == "sdr":
            covers = (f"overseas leads first ({', '.join(self.regions)})" if self.regions
                      else "inbound leads by round robin")
        else:
            covers = f"SQLs from {', '.join(self.regions)}"
        return f"{self.name}: {covers}"


# Inside sales (the SDR team, which gets inbound MQLs) and field sales (which gets SQLs),
# with territories over the demo companies' regions; leads outside every territory go by
# round robin. "demo-" marks them as the demo's: a user's own reps are never touched. Their
# names are none the stream gives its leads, so that a rep is never taken for a lead.
DEMO_REPS = (
    DemoRep("demo-sdr-kobayashi", "小林 彩", "sdr", "aya.kobayashi@baton-demo.example"),
    DemoRep("demo-sdr-kato", "加藤 拓也", "sdr", "takuya.kato@baton-demo.example"),
    DemoRep("demo-sdr-clark", "Emily Clark", "sdr", "emily.clark@baton-demo.example",
            timezone="Europe/London", regions=OVERSEAS),
    DemoRep("demo-fs-yamaguchi", "山口 遥", "field_sales",
            "haruka.yamaguchi@baton-demo.example", regions=("東京都", "神奈川県", "宮城県"),
            daily_capacity=20),
    DemoRep("demo-fs-matsumoto", "松本 隆", "field_sales",
            "takashi.matsumoto@baton-demo.example", regions=("愛知県", "大阪府", "福岡県"),
            daily_capacity=20),
    DemoRep("demo-fs-walker", "Daniel Walker", "field_sales",
            "daniel.walker@baton-demo.example", timezone="America/Los_Angeles",
            regions=OVERSEAS, daily_capacity=20),
)
DEMO_REP_IDS = frozenset(rep.rep_id for rep in DEMO_REPS)
DEMO_NAMES = {rep.rep_id: rep.name for rep in DEMO_REPS}


@dataclass(frozen=True)
class OrgPlan:
    """What the demo does about reps: the user's own reps, and the demo reps already there
    and still to create (none while the user has reps of their own)."""

    own: tuple[str, ...]
    present: tuple[DemoRep, ...]
    missing: tuple[DemoRep, ...]


def plan_sales_org(rep_ids: Iterable[str]) -> OrgPlan:
    """Return the plan for a routing that has ``rep_ids``.

    A user with reps of their own keeps their organisation as it is: demo reps beside
    them would take real leads in the round robin. Demo reps already there stay as they
    are (a user may have changed them); only missing ones are created.
    """
    ids = frozenset(rep_ids)
    own = tuple(sorted(ids - DEMO_REP_IDS))
    present = tuple(rep for rep in DEMO_REPS if rep.rep_id in ids)
    missing = () if own else tuple(rep for rep in DEMO_REPS if rep.rep_id not in ids)
    return OrgPlan(own, present, missing)


def sibling_url(ingest_url: str, service: str) -> str:
    """Return ``service``'s address beside ingest's, ports laid out as ``baton run`` does."""
    url = httpx.URL(ingest_url)
    if url.port is None:
        raise DemoError(f"cannot tell where {service} is from {ingest_url} (no port); "
                        f"pass --{service}-url")
    offset = registry.default_port(service) - registry.default_port("ingest")
    return str(url.copy_with(port=url.port + offset, raw_path=b"")).rstrip("/")


async def _call(client: httpx.AsyncClient, method: str, url: str, *,
                json: Any = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    """Return the answer to a call to routing or pipeline; raise DemoError if it cannot be
    reached or answers with a status not in ``ok``."""
    try:
        response = await client.request(method, url, json=json)
    except httpx.HTTPError as error:
        raise DemoError(f"cannot reach {url}: {error!r}; is `make run` running?") from None
    if response.status_code not in ok:
        raise DemoError(f"{method} {url} -> {response.status_code} {response.text[:300]}")
    return response


def _reps(count: int) -> str:
    """Return ``count`` reps in words: "1 rep", "3 reps"."""
    return f"{count} rep{'' if count == 1 else 's'}"


async def set_up_sales_org(client: httpx.AsyncClient, routing_url: str) -> OrgPlan:
    """Create the demo reps routing lacks, unless the user has reps of their own; print what
    was set up; return the plan."""
    listed = await _call(client, "GET", f"{routing_url}/v1/reps")
    plan = plan_sales_org(rep["rep_id"] for rep in listed.json())
    if plan.own:
        mixed = f" (and {_reps(len(plan.present))} of the demo)" if plan.present else ""
        print(f"baton demo: routing has {_reps(len(plan.own))} of your own{mixed}; the demo adds "
              "none: your reps get the demo's leads in their working hours", flush=True)
        return plan
    for rep in plan.missing:
        await _call(client, "PUT", f"{routing_url}/v1/reps/{rep.rep_id}", json=rep.body())
    if not plan.missing:
        print(f"baton demo: the demo sales organisation is in place ({len(plan.present)} reps "
              f"at {routing_url}/v1/reps)", flush=True)
        return plan
    print(f"baton demo: routing had no reps, so the demo set up a sales organisation "
          f"({routing_url}/v1/reps):", flush=True)
    for rep in plan.missing:
        print(f"  {rep.rep_id:<20}{rep.team:<13}{rep.describe()}", flush=True)
    print("  They work a round-the-clock demo shift, every day, so that leads are assigned "
          "whenever the demo runs.\n"
          "  Add your real reps, with their own working hours, with "
          f"PUT {routing_url}/v1/reps/{{rep_id}};\n"
          "  the demo then adds no more. Retire a demo rep by putting it again with "
          '"active": false.', flush=True)
    return plan


# --- the demo reps at work -----------------------------------------------------------------


@dataclass(frozen=True)
class HotLead:
    """A hot lead the stream posted and ingest accepted."""

    lead_id: str
    name: str
    company: str
    japanese: bool


@dataclass
class FollowUps:
    """What the demo reps did with the hot leads: leads accepted, qualified, deals opened."""

    accepted: list[str] = field(default_factory=list)
    qualified: list[str] = field(default_factory=list)
    deals: list[str] = field(default_factory=list)


# Of the first few hot leads the demo reps own, they accept ACCEPTED and qualify QUALIFIED:
# enough to see SAL, SQL and a deal; the rest wait for the user.
ACCEPTED, QUALIFIED = 3, 2
POLL_SECONDS = 0.5


async def _lead_state(client: httpx.AsyncClient, routing_url: str, lead_id: str,
                      deadline: float) -> dict[str, Any] | None:
    """Return routing's state of the lead once routing knows it, if it is an MQL; None if it
    is not one, or routing does not know it by ``deadline``."""
    while True:
        response = await _call(client, "GET", f"{routing_url}/v1/leads/{lead_id}", ok=(200, 404))
        if response.status_code == 200:
            # Routing learns of a lead and promotes it in one step: one it knows that is not
            # an MQL was not hot enough, or was acted on already.
            state = response.json()
            return state if state["stage"] == "mql" else None
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


async def _deal_of(client: httpx.AsyncClient, pipeline_url: str, lead_id: str,
                   deadline: float) -> dict[str, Any] | None:
    """Return the lead's open deal once pipeline has opened it, or None by ``deadline``."""
    while True:
        response = await _call(client, "GET", f"{pipeline_url}/v1/leads/{lead_id}/deals")
        if deals := [deal for deal in response.json() if deal["is_open"]]:
            return dict(deals[0])
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)


def _who(rep_id: str | None) -> str:
    """Return a rep as ``name (id)``, or ``nobody yet (queued)``."""
    if rep_id is None:
        return "nobody yet (queued)"
    return f"{DEMO_NAMES[rep_id]} ({rep_id})" if rep_id in DEMO_NAMES else rep_id


async def work_hot_leads(client: httpx.AsyncClient, routing_url: str, pipeline_url: str,
                         hot: Sequence[HotLead], *, seed: int, wait: float = 30.0
                         ) -> FollowUps:
    """Have the demo reps accept, call and qualify a few of the hot leads they own, and the
    field rep who gets each SQL fill in its deal; print each step; return what was done.

    Only leads a demo rep owns are touched: the demo never acts in a user's rep's name. A
    lead someone else acts on meanwhile (409) is left to them.
    """
    done = FollowUps()
    rng = random.Random(seed)
    deadline = time.monotonic() + wait
    for lead in hot:
        if len(done.accepted) >= ACCEPTED:
            break
        state = await _lead_state(client, routing_url, lead.lead_id, deadline)
        if state is None or state["owner_id"] not in DEMO_REP_IDS:
            continue
        rep = state["owner_id"]
        leads = f"{routing_url}/v1/leads/{lead.lead_id}"
        if not await _act(client, f"{leads}/accept", {"rep_id": rep}, lead):
            continue
        done.accepted.append(lead.lead_id)
        print(f"  {_who(rep)} accepted {lead.name} ({lead.company}): SAL", flush=True)
        if len(done.qualified) >= QUALIFIED:
            continue
        note = ("電話でヒアリング: 課題は営業の引き継ぎ漏れ、今期中に導入したい" if lead.japanese
                else "Discovery call: hand-offs get lost; wants it live this quarter")
        # Budget, need and timeframe heard on the call, authority for the first lead only:
        # BANT A, then B. Both asked for a demo or a quote, which qualifies on its own too.
        first = not done.qualified
        called = await _act(client, f"{leads}/contacts", {
            "rep_id": rep, "kind": "call", "occurred_at": datetime.now(UTC).isoformat(),
            "note": note}, lead)
        qualified = called and await _act(client, f"{leads}/qualify", {
            "rep_id": rep, "budget": True, "authority": first, "need": True,
            "timeframe": True, "demo_or_quote_requested": True}, lead)
        if not qualified:
            continue
        done.qualified.append(lead.lead_id)
        field_rep = qualified["owner_id"]
        print(f"  {_who(rep)} called and qualified them (BANT {'A' if first else 'B'}): SQL, "
              f"handed to field sales: {_who(field_rep)}", flush=True)
        if field_rep not in DEMO_REP_IDS:
            continue
        deal = await _deal_of(client, pipeline_url, lead.lead_id, deadline)
        if deal is None:
            print(f"  (pipeline has no deal for {lead.name} yet; see {pipeline_url}/v1/deals)",
                  flush=True)
            continue
        await _fill_in(client, pipeline_url, deal, lead, rng)
        done.deals.append(deal["deal_id"])
    return done


async def _act(client: httpx.AsyncClient, url: str, body: dict[str, Any],
               lead: HotLead) -> dict[str, Any] | None:
    """Return the lead's state after a rep's action, or None (printing why) if routing
    refused it because of what someone else did to the lead meanwhile."""
    response = await _call(client, "POST", url, json=body, ok=(200, 409))
    if response.status_code == 409:
        print(f"  ({lead.name}: {response.json().get('detail')}; left as it is)", flush=True)
        return None
    state: dict[str, Any] = response.json()
    return state


async def _fill_in(client: httpx.AsyncClient, pipeline_url: str, deal: dict[str, Any],
                   lead: HotLead, rng: random.Random) -> None:
    """Enter the deal's estimated amount, expected close date and first next action, as its
    field rep (the deal's owner) does after the hand-off, and print the deal."""
    today = datetime.now(UTC).date()
    amount = rng.choice((3_600_000, 6_000_000, 12_000_000, 24_000_000))
    closes = today + timedelta(days=rng.randrange(45, 120))
    meeting = today + timedelta(days=2)
    text = "初回訪問でヒアリング" if lead.japanese else "Discovery meeting on site"
    await _call(client, "PATCH", f"{pipeline_url}/v1/deals/{deal['deal_id']}", json={
        "rep_id": deal["owner_id"], "amount": amount, "expected_close_date": closes.isoformat(),
        "next_action": {"due": meeting.isoformat(), "text": text}})
    print(f"  pipeline opened a deal in {deal['phase']} for {lead.company}: amount {amount:,}, "
          f"expected to close {closes}; next: {text} on {meeting}", flush=True)


def _print_where_to_look(routing_url: str, pipeline_url: str, done: FollowUps) -> None:
    """Print where the user sees what the demo did."""
    print(f"baton demo: {len(done.accepted)} hot leads accepted, {len(done.qualified)} "
          f"qualified, {len(done.deals)} deals opened. See them at\n"
          f"  {routing_url}/v1/assignments, {routing_url}/v1/funnel,\n"
          f"  {pipeline_url}/v1/deals and {pipeline_url}/v1/forecast", flush=True)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` command to the ``baton`` parser."""
    demo = commands.add_parser("demo", help="post realistic traffic to a running stack")
    demo.add_argument("--url", default=DEFAULT_URL, help=f"ingest's address ({DEFAULT_URL})")
    demo.add_argument("--api-key", help="default: the first key of BATON_INGEST_API_KEYS, "
                      "else the local stack's demo key")
    demo.add_argument("--count", type=_count, default=200, help="requests to send (200)")
    demo.add_argument("--rate", type=_rate, default=20.0, help="requests a second (20)")
    demo.add_argument("--seed", type=int, default=None, help="repeat a stream exactly")
    demo.add_argument("--routing-url", help="routing's address (default: ingest's host, "
                      "port + 2, as `baton run` lays them out)")
    demo.add_argument("--pipeline-url", help="pipeline's address (default: ingest's host, "
                      "port + 3)")
    demo.add_argument("--traffic-only", action="store_true",
                      help="only post traffic: set up no demo reps and work no leads")


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
    """Run the demo; return 0 when every request was accepted."""
    seed = arguments.seed if arguments.seed is not None else random.randrange(1 << 32)
    return asyncio.run(run_demo(
        arguments.url, arguments.api_key or default_api_key(), count=arguments.count,
        rate=arguments.rate, seed=seed, routing_url=arguments.routing_url,
        pipeline_url=arguments.pipeline_url, traffic_only=arguments.traffic_only))


async def run_demo(url: str, api_key: str, *, count: int, rate: float, seed: int,
                   routing_url: str | None = None, pipeline_url: str | None = None,
                   traffic_only: bool = False, wait: float = 30.0) -> int:
    """Set up the demo sales organisation if routing has no reps, post the stream, then
    have the demo reps work a few hot leads; return the exit code (0: every request of
    the stream was accepted)."""
    if traffic_only:
        return await post_stream(url, api_key, count=count, rate=rate, seed=seed)
    try:
        routing = (routing_url or sibling_url(url, "routing")).rstrip("/")
        pipeline = (pipeline_url or sibling_url(url, "pipeline")).rstrip("/")
        async with httpx.AsyncClient(timeout=10) as client:
            await set_up_sales_org(client, routing)
            hot: list[HotLead] = []
            code = await post_stream(url, api_key, count=count, rate=rate, seed=seed,
                                     hot_leads=hot)
            if hot:
                print("baton demo: the demo reps work the first hot leads", flush=True)
                done = await work_hot_leads(client, routing, pipeline, hot, seed=seed,
                                            wait=wait)
                _print_where_to_look(routing, pipeline, done)
    except DemoError as error:
        print(f"baton demo: {error} (`--traffic-only` posts traffic to ingest alone)",
              file=sys.stderr)
        return 1
    return code


async def post_stream(url: str, api_key: str, *, count: int, rate: float, seed: int,
                      hot_leads: list[HotLead] | None = None) -> int:
    """Send ``count`` submissions at ``rate`` a second; print a summary; return the exit code.

    The hot leads ingest accepted are added to ``hot_leads``, if given, in the order sent.
    """
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
                if hot_leads is not None:
                    hot_leads.append(HotLead(
                        str(response.json()["lead_id"]), submission.body["name"],
                        submission.body["company"], not submission.body["name"].isascii()))
            await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))
    print(f"baton demo: sent {count} in {time.monotonic() - started:.1f}s; "
          f"statuses {dict(sorted(statuses.items()))}; {hot} hot leads", flush=True)
    print("  " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()), flush=True)
    return 0 if statuses[202] == count else 1
