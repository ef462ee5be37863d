"""Ingest's pure rules: normalising what forms and tools send, and deriving identities."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

import idna
import phonenumbers

from schemas.events import ACCOUNT_KEY_LENGTH, PHONE_LENGTH, Account, LeadProfile, TouchpointType

# A stable namespace so that one e-mail address always maps to one lead id.
LEAD_NAMESPACE = uuid.UUID("6f1c2a52-7d3e-4c8e-9f0a-2b5d8e4c1a90")
DEFAULT_PHONE_REGION = "JP"

FREE_MAIL_DOMAINS = frozenset(
    {
        # global consumer mail
        "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com",
        "msn.com", "icloud.com", "me.com", "mac.com", "aol.com", "protonmail.com", "proton.me",
        "gmx.com", "mail.com", "zoho.com", "yandex.com", "tutanota.com",
        # Japanese portals and ISPs
        "yahoo.co.jp", "ymail.ne.jp", "hotmail.co.jp", "outlook.jp", "live.jp", "nifty.com",
        "biglobe.ne.jp", "ocn.ne.jp", "so-net.ne.jp", "plala.or.jp", "excite.co.jp",
        "goo.jp", "mail.goo.ne.jp", "infoseek.jp", "livedoor.com", "ybb.ne.jp",
        # Japanese mobile carriers
        "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp",
        "disney.ne.jp", "ymobile.ne.jp", "y-mobile.ne.jp", "emnet.ne.jp", "pdx.ne.jp",
        "willcom.com", "wcm.ne.jp", "rakumail.jp", "uqmobile.jp", "povo.jp", "vodafone.ne.jp",
        # China, Taiwan and Hong Kong
        "qq.com", "foxmail.com", "163.com", "126.com", "yeah.net", "sina.com", "sohu.com",
        "yahoo.com.tw", "yahoo.com.hk",
        # Korea
        "naver.com", "daum.net", "hanmail.net",
        # Germany and Austria
        "gmx.de", "gmx.net", "gmx.at", "web.de", "t-online.de", "freenet.de", "hotmail.de",
        "yahoo.de",
        # United Kingdom
        "yahoo.co.uk", "hotmail.co.uk", "live.co.uk", "outlook.co.uk", "btinternet.com",
        # France
        "hotmail.fr", "yahoo.fr", "outlook.fr", "orange.fr", "wanadoo.fr", "free.fr", "sfr.fr",
        "laposte.net",
        # Italy and Spain
        "libero.it", "virgilio.it", "yahoo.it", "hotmail.it", "yahoo.es", "hotmail.es",
        # Russia
        "mail.ru", "yandex.ru",
        # Americas, Oceania and India
        "yahoo.ca", "terra.com.br", "uol.com.br", "bol.com.br", "yahoo.com.au", "bigpond.com",
        "rediffmail.com",
    }
)
# Hosts of many people's pages: a free-mail lead's "web site" there (a Facebook page, a blog,
# a free site builder's subdomain) is the lead's own page, not a company's domain. Checked as
# free mail is, parents included ("cafe.blog.fc2.com" is fc2.com's).
SHARED_HOST_DOMAINS = frozenset(
    {
        # social networks and link pages
        "facebook.com", "fb.com", "instagram.com", "linkedin.com", "x.com", "twitter.com",
        "youtube.com", "youtu.be", "tiktok.com", "line.me", "lin.ee", "lit.link", "linktr.ee",
        # blogs
        "ameblo.jp", "note.com", "fc2.com", "blogspot.com", "wordpress.com", "hatenablog.com",
        "hatenablog.jp",
        # site builders and shops
        "sites.google.com", "business.site", "wixsite.com", "jimdofree.com", "jimdosite.com",
        "studio.site", "peraichi.com", "base.shop", "stores.jp",
        # directories, listings and short links: a shop's or a person's page under the host
        "tabelog.com", "hotpepper.jp", "wantedly.com", "prtimes.jp", "threads.net",
        "github.com", "medium.com", "g.page", "goo.gl", "maps.google.com", "bit.ly",
    }
)
# A free-mail lead's company domain is the account unless it is one of these.
NO_COMPANY_DOMAINS = FREE_MAIL_DOMAINS | SHARED_HOST_DOMAINS
# Legal forms dropped when companies are matched by name (free-mail leads). Japanese ones
# go wherever they stand, as Japanese writes no spaces between words.
JAPANESE_LEGAL_FORMS = ("株式会社", "有限会社", "合同会社", "合資会社", "合名会社", "(株)", "(有)",
                        "(同)", "(資)", "(名)")
# Latin ones only as whole words, wherever they stand ("Acme Inc. Japan" is "Acme Japan"):
# not next to a Latin letter or digit, so that "Zinc" keeps its "inc" but "アクメInc." is
# "アクメ", as nothing spaces Japanese (or other scripts' text) from them either.
LATIN_LETTER = r"0-9a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0300-\u036f\u1e00-\u1eff"
# "Co." is a form with its period only ("co" alone is too often a word or part of one, as
# in "Co-op"), and only if no letter follows the period ("x.co.jp" keeps its "co"). "Pte",
# "Pty", "Pvt" and "Private" are forms only before "Ltd" or "Limited" ("Pte. Ltd."), and
# "Limited" alone only where no Latin word follows it outside brackets: it ends a name
# ("Acme Limited (Japan)"), while "Limited Run Games" is a name. "AG" is none: as a word
# it is as often initials or agriculture ("AG Partners", "Ag Tech").
LATIN_LEGAL_FORM = (rf"(?<![{LATIN_LETTER}])(?:(?:co|pte|pty|pvt|private)\.?,?\s*(?:ltd|limited)"
                    rf"|co\.|company|inc|ltd|limited(?![^(]*[{LATIN_LETTER}])|llc|p\.?l\.?c|gmbh"
                    rf"|corp(?:oration)?|k\.?\s?k)(?![{LATIN_LETTER}])\.?")
LEGAL_FORM = rf"(?:{LATIN_LEGAL_FORM}|{'|'.join(map(re.escape, JAPANESE_LEGAL_FORMS))})"
# What separates a form from the rest goes with it: spaces and commas always ("Acme, Inc.,
# Japan" is "Acme Japan"); a mark ("・", "/", "-") stays once if the form stood between
# two parts of the name ("Acme Inc.・Japan" is "Acme・Japan"), not if it would dangle.
SEPARATING_MARKS = "・·/-‐‑‒–—―−"
SEPARATOR = rf"[\s,、{''.join(map(re.escape, SEPARATING_MARKS))}]"
# An "&" or "and" just before a form joins it to the name ("Acme & Co. Ltd", "Acme and
# Company"): it goes with the form, or "acme&" is left. After one, "Co" needs no period
# ("Acme and Co"). One anywhere else is part of the name ("AT&T", "Johnson & Johnson").
CONNECTED_FORM = (rf"(?:&|(?<![{LATIN_LETTER}])and){SEPARATOR}*"
                  rf"(?:{LEGAL_FORM}|(?<![{LATIN_LETTER}])co(?![{LATIN_LETTER}])\.?)")
# Brackets holding nothing but forms go with them ("Acme (Inc.)" is "Acme"); others stay,
# being part of the name ("Sample Inc. (Japan)" is "Sample (Japan)").
BRACKETS = ("()", "[]", "{}", "<>", "【】", "「」", "『』", "〔〕", "〈〉", "《》", "〖〗", "〘〙",
            "“”", "‘’", "«»", '""', "''")
OPENING_BRACKETS = frozenset(pair[0] for pair in BRACKETS)
CLOSING_BRACKETS = frozenset(pair[1] for pair in BRACKETS)
STACKED_FORMS = rf"{LEGAL_FORM}(?:{SEPARATOR}*{LEGAL_FORM})*"
LEGAL_FORM_OR_BRACKETED = "|".join(
    [CONNECTED_FORM, LEGAL_FORM,
     *(rf"{re.escape(pair[0])}{SEPARATOR}*{STACKED_FORMS}{SEPARATOR}*{re.escape(pair[1])}"
       for pair in BRACKETS)])
# Stacked forms ("Inc., Ltd.", "Inc. (K.K.)") go as one. A match starts only where a run of
# separators does (no form or bracket starts with one): trying each space of a long run
# would cost the run's square.
LEGAL_FORMS = re.compile(
    rf"(?<!{SEPARATOR})({SEPARATOR}*)(?:{LEGAL_FORM_OR_BRACKETED})"
    rf"(?:{SEPARATOR}*(?:{LEGAL_FORM_OR_BRACKETED}))*({SEPARATOR}*)")
# What people write in a required company field when they have none to give. Each would
# make every free-mail lead writing it one account, so it identifies no company. Compared
# by letters and digits only ("N/A", "n.a." and "(なし)" alike); a name with no letter or
# digit at all ("-", "・", "()") is no company either. Kinds of business (個人事業主, 自営業)
# are no placeholders: they state a business, not the lack of one.
PLACEHOLDER_COMPANIES = frozenset({
    "na", "none", "nil", "null", "unknown", "tbd", "なし", "無し", "特になし", "個人", "不明",
})
NOT_LETTERS_OR_DIGITS = re.compile(r"[\W_]+")  # \w is what str.isalnum() is, and "_"
# phonenumbers knows "ext", "x", "#" and others, not the Japanese "内線".
JAPANESE_EXTENSION = "内線"

# Labels of letters, digits and hyphens, no hyphen at either end (the last one too:
# "example.com-" is none); the top-level domain starts with a letter.
DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
DOMAIN_LENGTH = 253  # DNS's limit, in ASCII form
WEBINAR_REGISTRATION = "webinar.registration"
"""An activity type of its own: a registration is captured but is not attendance."""


def storable(text: str) -> str:
    """Return ``text`` if PostgreSQL can store it; raise ValueError if it holds a NUL."""
    if "\x00" in text:
        raise ValueError("text may not contain a NUL character (\\u0000)")
    return text


def normalise_text(value: str | None, limit: int | None = None) -> str | None:
    """Return ``value`` in Unicode NFKC with outer whitespace removed, or None if empty.

    Raises ValueError if it is not ``storable`` or if its normal form is longer than
    ``limit``: NFKC can lengthen text ("㍿" is "株式会社").
    """
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", storable(value)).strip()
    if limit is not None and len(text) > limit:
        raise ValueError(f"text should have at most {limit} characters once normalised to "
                         f"NFKC, as it is stored; it has {len(text)}")
    return text or None


def normalise_email(email: str) -> str:
    """Return the e-mail address in NFKC and lower case, its domain in IDNA ASCII form.

    Raises ValueError if the domain is not a valid one.
    """
    address = unicodedata.normalize("NFKC", storable(email)).strip().lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return address  # no domain to check: the address pattern refuses it
    # ASCII domains are held to the rules of internationalised ones: unchecked,
    # "example..com" and "-bad-.com" were each a lead and an account of their own. DOMAIN
    # alone checks all the codec would of an ASCII one (no empty label, none over 63
    # characters), at a fifth of the cost. One trailing dot is DNS's root ("example.com." is
    # example.com); dropped once in ASCII, as IDNA maps "。" to a dot too.
    host = (domain if domain.isascii() else _ascii_domain(domain)).removesuffix(".")
    if not DOMAIN.fullmatch(host):
        raise ValueError(f"not a valid domain: {domain!r}")
    return f"{local}@{host}"


def normalise_domain(value: str) -> str:
    """Return the host of a web address or domain: lower case, no ``www.``, IDNA ASCII form.

    Raises ValueError when nothing that looks like a domain is left.
    """
    text = unicodedata.normalize("NFKC", value).strip().lower()
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = _ascii_domain(host.rstrip(".")).removeprefix("www.")
    if not DOMAIN.fullmatch(host):
        raise ValueError("not a domain or web address")
    if len(host) > DOMAIN_LENGTH:  # internationalised labels grow in their ASCII form
        raise ValueError(f"a domain has at most {DOMAIN_LENGTH} characters in its ASCII "
                         f"form; this one has {len(host)}")
    return host


def _ascii_domain(domain: str) -> str:
    """Return ``domain`` with internationalised labels in their ASCII (punycode) form."""
    try:
        if domain.isascii():  # checked for empty and overlong labels, and kept as it is
            return domain.encode("idna").decode("ascii")
        # IDNA 2008 with UTS 46, as browsers and registries: Python's own codec (IDNA 2003)
        # maps "faß.de" to "fass.de", another registered domain than xn--fa-hia.de.
        return idna.encode(domain, uts46=True).decode("ascii")
    except (UnicodeError, idna.IDNAError) as error:
        raise ValueError(f"not a valid domain: {domain!r}") from error


def normalise_phone(value: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """Return a phone number in E.164 (RFC 3966's ``;ext=`` after it for an extension).

    National numbers are read in ``region``; an extension may be written ``ext. 12``,
    ``x12`` or ``内線12``, and is left out when it would not fit the event. Raises
    ValueError for text that is not a valid phone number.
    """
    text = unicodedata.normalize("NFKC", value).replace(JAPANESE_EXTENSION, "ext")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        raise ValueError("not a phone number") from error
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not number.extension:
        return e164
    # E.164 has no extension; RFC 3966 (tel: URIs) gives it the ";ext=" parameter.
    phone = f"{e164};ext={number.extension}"
    # The number is what reaches the lead; an extension too long to carry is lost rather
    # than the whole lead refused (as before extensions were kept).
    return phone if len(phone) <= PHONE_LENGTH else e164


def email_domain(email: str) -> str:
    """Return the domain part of a normalised e-mail address."""
    return email.rsplit("@", 1)[1]


def is_free_mail(domain: str) -> bool:
    """Return True for consumer and carrier mail domains that do not identify a company."""
    # Carriers and ISPs hand out addresses at subdomains (Willcom's are all "xx.pdx.ne.jp",
    # OCN's mostly "xxx.ocn.ne.jp"): the domain or any parent of it counts.
    return _in_or_under(domain, FREE_MAIL_DOMAINS)


def _in_or_under(domain: str, domains: frozenset[str]) -> bool:
    """Return True if ``domain`` or a parent of it (not its top-level domain) is in ``domains``."""
    labels = domain.split(".")
    return any(".".join(labels[start:]) in domains for start in range(len(labels) - 1))


def company_key(company: str) -> str:
    """Return a company name reduced to what identifies it: case-folded NFKC, no legal form."""
    # NFKC again after folding, as folding may undo it (Unicode's NFKC_Casefold, simplified).
    key = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", company).casefold())
    return "".join(LEGAL_FORMS.sub(_without_legal_forms, key).split())


def _without_legal_forms(match: re.Match[str]) -> str:
    """Return what stays of dropped legal forms: a mark they stood between, or a space."""
    text, start, end = match.string, match.start(), match.end()
    if (start == 0 or end == len(text) or text[start - 1] in OPENING_BRACKETS
            or text[end] in CLOSING_BRACKETS):
        return " "  # a mark would be left at an end of the name or of a bracket
    # Only the marks outside the forms: one between two stacked forms separated nothing.
    # Commas belong to Latin forms (", Inc."), not to Japanese ones: there they part the name.
    forms = text[match.end(1):match.start(2)]
    marks = [char for run, japanese in ((match[1], forms.startswith(JAPANESE_LEGAL_FORMS)),
                                        (match[2], forms.endswith(JAPANESE_LEGAL_FORMS)))
             for char in run if char in SEPARATING_MARKS or (japanese and char in ",、")]
    return marks[0] if marks else " "


def identifies_a_company(key: str) -> bool:
    """Return True unless a company key is a placeholder or holds no letter or digit."""
    letters = NOT_LETTERS_OR_DIGITS.sub("", key)
    # Kana and kanji are letters. A modifier letter is none on its own: "ー" and "々" only
    # lengthen or repeat the one before them.
    return letters not in PLACEHOLDER_COMPANIES and any(
        unicodedata.category(char) != "Lm" for char in letters)


def name_account_key(company: str) -> str:
    """Return the account key of a company known only by name ("" if nothing identifies it)."""
    name = company_key(company)
    if not identifies_a_company(name):
        return ""
    key = f"name:{name}"
    if len(key) <= ACCOUNT_KEY_LENGTH:
        return key
    # Folding lengthens some names ("İ" is "i̇") past what the event carries: keep a readable
    # start, tell such names apart by a digest of the whole. The space marks this form, as
    # no whitespace is left in a name's key.
    digest = f" sha256:{hashlib.sha256(name.encode()).hexdigest()}"
    return key[:ACCOUNT_KEY_LENGTH - len(digest)] + digest


def account_key(email: str, company: str | None, company_domain: str | None = None) -> str:
    """Return the account's key: the mail domain; for free mail the company's, or the person."""
    domain = email_domain(email)
    if not is_free_mail(domain):
        return f"domain:{domain}"
    # A page on a shared host ("facebook.com/cafe.a", "cafe.blog.fc2.com") is the lead's,
    # not a company's domain.
    if company_domain and not _in_or_under(company_domain, NO_COMPANY_DOMAINS):
        return f"domain:{company_domain}"
    return (company and name_account_key(company)) or f"person:{email}"


def account_for(email: str, company: str | None, company_domain: str | None) -> Account:
    """Return the account a lead belongs to, from its address and (merged) company facts."""
    key = account_key(email, company, company_domain)
    return Account(
        account_key=key,
        domain=key.removeprefix("domain:") if key.startswith("domain:") else None,
        company_name=company,
        free_mail=is_free_mail(email_domain(email)),
    )


def lead_id_for(email: str) -> uuid.UUID:
    """Return the lead id of a normalised e-mail address: one lead per address."""
    return uuid.uuid5(LEAD_NAMESPACE, email)


def decoy_event_id(key_id: str, idempotency_key: str | None, content: bytes) -> str:
    """Return the event id a honeypot request is told: the same for the same idempotency
    key, or without one for the same content, so that a repeat gets the first answer."""
    request = b"content:" + content if idempotency_key is None else (
        b"key:" + idempotency_key.encode())
    # Salted with the key's id, which callers never see, and shaped as the uuid4 of a stored
    # event (not a uuid5, whose version shows): a bot can tell it from a real id neither way.
    digest = hashlib.sha256(key_id.encode() + b"\n" + request).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# Read once: pydantic's model_fields is a property that warns when read on an instance,
# several times the cost of a tuple on every lead.captured.
EVENT_PROFILE_FIELDS = tuple(LeadProfile.model_fields)


def profile_of(merged: Mapping[str, object]) -> LeadProfile:
    """Return the event profile in a lead's merged record (which also keeps ingest-only facts)."""
    return LeadProfile.model_validate(
        {name: merged[name] for name in EVENT_PROFILE_FIELDS if name in merged})


def touchpoint_type_for(activity_type: str) -> TouchpointType:
    """Return the touchpoint an activity is reported as: a webinar registration is a form."""
    if activity_type == WEBINAR_REGISTRATION:
        return TouchpointType.FORM_SUBMISSION
    return TouchpointType(activity_type)


def fingerprint(canonical: bytes) -> str:
    """Return the digest that tells whether two requests carried the same content."""
    return hashlib.sha256(canonical).hexdigest()
