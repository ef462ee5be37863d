"""The scoring model: a versioned YAML document, validated before any lead is scored."""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.events import TouchpointType

DEFAULT_MODEL_FILE = Path(__file__).with_name("model.yaml")
SHORTEST_SPAN_DAYS = 1 / 24  # an hour: shorter windows or half-lives mean nothing here


def at_least_an_hour(days: float) -> float:
    """Return ``days`` if it spans an hour or more; raise ValueError otherwise."""
    if days < SHORTEST_SPAN_DAYS:
        raise ValueError(f"must be at least an hour ({SHORTEST_SPAN_DAYS:.4f} days)")
    return days


Days = Annotated[float, Field(gt=0, le=3650), AfterValidator(at_least_an_hour)]
# A surge is found by scaling today's decayed points back to moments up to two surge
# windows ago, dividing by 0.5 ** (2 * window / half-life): past about 1,022 half-lives
# that divisor leaves a float's normal range (and past 1,074 it is zero).
SURGE_WINDOWS_PER_HALF_LIFE = 500
Points = Annotated[float, Field(ge=-100, le=100)]
Penalty = Annotated[float, Field(ge=-100, le=0)]
Bonus = Annotated[float, Field(ge=0, le=100)]


def normalise(text: str) -> str:
    """Return ``text`` as keywords are compared: NFKC, case-folded, each run of spaces one
    space, outer spaces removed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


# Kanji and kana, which Japanese writes without spaces between words, though a form may
# hold one anywhere ("社長 秘書", "代表取締役　秘書"). Not the voiced sound marks: NFKC
# writes ゛ as a space and a combining mark, which would join the kana before it if the
# space went.
JAPANESE = ("\u3005-\u3007\u3040-\u3098\u309d-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
            "\u4e00-\u9fff\uf900-\ufaff")
# CJK text runs English words into kanji, kana or hangul without a space ("CEO兼CTO"):
# those characters end a word, though \b counts them as letters.
CJK = ("\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
       "\uac00-\ud7af\uf900-\ufaff")
WORD_START, WORD_END = rf"(?<![^\W{CJK}])", rf"(?![^\W{CJK}])"
# A space beside a Japanese character with a letter, digit or Japanese character on its
# other side (not a combining mark, which would join the character before the space).
_SPACE_BY_JAPANESE = re.compile(
    rf"(?<=[{JAPANESE}]) (?=[{JAPANESE}]|\w)|(?<=\w) (?=[{JAPANESE}])")
_JAPANESE_CHARACTER = re.compile(f"[{JAPANESE}]")


def compact(text: str) -> str:
    """Return ``text`` normalised with no space beside a Japanese character: how phrases
    and listed values are compared ("株式会社 サンプル" is "株式会社サンプル", "IT サービス"
    is "itサービス")."""
    return _SPACE_BY_JAPANESE.sub("", normalise(text))


@functools.lru_cache(maxsize=256)
def keyword_pattern(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """Return a pattern matching ASCII keywords as whole words and others anywhere."""
    # The ASCII keywords share one pair of boundaries: each pair is two classes over the
    # CJK ranges, and compiling a pair per keyword took 56 ms for the default model's
    # titles (10 ms shared). A keyword whose boundary fails gives way to the next one.
    words = "|".join(re.escape(k) for k in keywords if k.isascii())
    parts = [rf"{WORD_START}(?:{words}){WORD_END}"] if words else []
    parts += [re.escape(k) for k in keywords if not k.isascii()]
    return re.compile("|".join(parts) or r"(?!)")


@functools.lru_cache(maxsize=256)
def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """Return a pattern matching compacted ``phrases`` in normalised text as keywords
    match, the longest of those starting at one place first; written with a space beside
    a Japanese character, only where the phrase ends a word.

    The space parts two words as often as it spaces one: 社長 秘書 is the president's
    secretary, but 取締役 秘書室担当 a director who also works in the secretariat, whose
    取締役 the phrase 取締役秘書 must not hide, and 学生 生活科学部 a student of a
    faculty, whose 学生 the phrase 学生生活 must not hide.
    """
    # "assistant to the president and ceo" must hide its "ceo" too, not only the
    # "assistant to the president" it starts with.
    longest_first = sorted(phrases, key=len, reverse=True)
    words = "|".join(re.escape(p) for p in longest_first if p.isascii())
    parts = [rf"{WORD_START}(?:{words}){WORD_END}"] if words else []
    parts += [rf"{_spaced(p)}(?!\w)|{re.escape(p)}" for p in longest_first if not p.isascii()]
    return re.compile("|".join(parts) or r"(?!)")


def _spaced(phrase: str) -> str:
    """Return a pattern of a compacted phrase that also matches it written with a space
    beside any of its Japanese characters."""
    pattern = [re.escape(phrase[0])]
    for before, character in itertools.pairwise(phrase):
        if " " not in (before, character) and (_JAPANESE_CHARACTER.match(before)
                                              or _JAPANESE_CHARACTER.match(character)):
            pattern.append(" ?")
        pattern.append(re.escape(character))
    return "".join(pattern)


def not_blank(text: str) -> str:
    """Return ``text`` if it is not empty; raise ValueError otherwise."""
    if not text:
        raise ValueError("must not be blank: write the keyword or phrase, or remove the entry")
    return text


# Keywords and listed values are compared as normalised text, so they are stored so. The
# length is checked after normalising (metadata applies in order): " " would otherwise be
# stored as "" (matching every text) and one NFKC ligature can expand to 18 characters, so
# a stored model would fail its own validation when read back. not_blank words the
# commonest mistake for sales ops; min_length stays for the published schema.
Keyword = Annotated[str, AfterValidator(normalise), AfterValidator(not_blank),
                    Field(min_length=1, max_length=100)]
# Phrases and listed values are stored compacted: a space beside a Japanese character
# changes nothing in a value, nor in a phrase where it ends a word (phrase_pattern). A
# keyword is not (営業部 長谷川 holds no 部長).
Phrase = Annotated[str, AfterValidator(compact), AfterValidator(not_blank),
                   Field(min_length=1, max_length=100)]


def _sorted(values: frozenset[Any]) -> list[Any]:
    """Return a set's members in order, so that documents and their JSON are stable."""
    return sorted(values)


Values = Annotated[frozenset[Phrase], PlainSerializer(_sorted, return_type=list[str])]
Touchpoints = Annotated[frozenset[TouchpointType],
                        PlainSerializer(_sorted, return_type=list[TouchpointType])]


class Part(BaseModel):
    """Base of every section: unknown keys are refused, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RepeatViews(Part):
    """Repeat views of the same page type within a window earn a fixed bonus each, capped."""

    touchpoints: Touchpoints
    window_days: Days
    points: Bonus
    cap: Annotated[int, Field(ge=0, le=100)]

    @property
    def window(self) -> timedelta:
        """Return the window as a duration."""
        return timedelta(days=self.window_days)


class Behaviour(Part):
    """Points per touchpoint, their bonuses, and how fast they fade."""

    points: dict[TouchpointType, Bonus]
    repeat_views: RepeatViews
    further_download_points: Bonus
    webinar_interaction_points: Bonus
    half_life_days: Days

    @property
    def half_life(self) -> timedelta:
        """Return the half-life as a duration."""
        return timedelta(days=self.half_life_days)


def check_phrases(keywords: tuple[str, ...], phrases: tuple[str, ...]) -> None:
    """Raise ValueError naming the first phrase that holds none of ``keywords`` or is one."""
    # Phrases are compacted: so are the keywords they are checked against.
    keywords = tuple(compact(keyword) for keyword in keywords)
    for phrase in phrases:
        # A phrase holding no keyword silences nothing: most likely it sits under the
        # wrong rule, or its keyword was renamed.
        if keyword_pattern(keywords).search(phrase) is None:
            raise ValueError(f"except_in: {phrase!r} holds none of this rule's keywords, so "
                             "it would change nothing; list it under the rule whose keyword "
                             "it holds, or remove it")
        if phrase in keywords:
            raise ValueError(f"except_in: {phrase!r} is one of this rule's keywords, which "
                             "would then never count; remove it from keywords or from "
                             "except_in")


class TitleRule(Part):
    """A seniority recognised by keywords in the job title, except inside the phrases of
    ``except_in`` (the president's secretary, 社長秘書, is no president)."""

    seniority: Annotated[str, Field(pattern=r"^[a-z][a-z_]*$", max_length=40)]
    points: Points
    keywords: Annotated[tuple[Keyword, ...], Field(min_length=1)]
    except_in: tuple[Phrase, ...] = ()

    @model_validator(mode="after")
    def phrases_hold_keywords(self) -> Self:
        """Return the rule if each of its phrases holds one of its keywords."""
        check_phrases(self.keywords, self.except_in)
        return self


class ValueRule(Part):
    """Points for an attribute whose value is one of a list (compared normalised)."""

    points: Points
    values: Values

    def matches(self, value: str | None) -> bool:
        """Return True if ``value`` is one of the listed values."""
        return value is not None and compact(value) in self.values


class KeywordRule(Part):
    """Points when a keyword appears in a text field, except inside the phrases of
    ``except_in``."""

    points: Points
    keywords: tuple[Keyword, ...]
    except_in: tuple[Phrase, ...] = ()

    @model_validator(mode="after")
    def phrases_hold_keywords(self) -> Self:
        """Return the rule if each of its phrases holds one of its keywords."""
        check_phrases(self.keywords, self.except_in)
        return self


class Competitors(Part):
    """Leads from these mail domains or companies are disqualified (score 0)."""

    domains: Values = frozenset()
    company_names: Values = frozenset()


class Fit(Part):
    """Points for who the lead is: the ideal customer profile and the negative rules."""

    titles: Annotated[tuple[TitleRule, ...], Field(min_length=1)]
    staff_points: Points
    industries: ValueRule
    employee_bands: ValueRule
    free_mail_points: Penalty
    disposable_domains: ValueRule
    student: KeywordRule
    competitors: Competitors

    @field_validator("titles")
    @classmethod
    def distinct_seniorities(cls, titles: tuple[TitleRule, ...]) -> tuple[TitleRule, ...]:
        """Return the rules if no seniority is named twice (or "staff", the fallback)."""
        names = [rule.seniority for rule in titles]
        if len(set(names)) != len(names) or "staff" in names:
            raise ValueError("each seniority must be named once, and 'staff' is the fallback")
        return titles


class Engagement(Part):
    """Buying-committee points: other engaged contacts and decision makers at the account."""

    window_days: Days
    per_contact_points: Bonus
    max_points: Bonus
    decision_maker_points: Bonus
    decision_maker_seniorities: Values
    ignored_touchpoints: Touchpoints = frozenset()

    @property
    def window(self) -> timedelta:
        """Return the window as a duration."""
        return timedelta(days=self.window_days)


class HighIntent(Part):
    """What counts as a high-intent signal, which tier A requires."""

    window_days: Days
    inquiries: Touchpoints
    webinar_with_downloads: Annotated[int, Field(ge=1, le=100)]
    pricing_or_case_study_views: Annotated[int, Field(ge=1, le=100)]
    decision_maker_engaged: bool

    @property
    def window(self) -> timedelta:
        """Return the window as a duration."""
        return timedelta(days=self.window_days)


class Tiers(Part):
    """Score thresholds of tiers A and B (C is below B)."""

    a: Annotated[int, Field(ge=1, le=100)]
    b: Annotated[int, Field(ge=1, le=100)]
    high_intent: HighIntent

    @model_validator(mode="after")
    def a_above_b(self) -> Self:
        """Return the tiers if A's threshold is above B's."""
        if self.a <= self.b:
            raise ValueError(f"tier A's threshold ({self.a}) must be above tier B's ({self.b})")
        return self


class Surge(Part):
    """A rise of at least ``points`` within the window is a surge."""

    points: Annotated[float, Field(gt=0, le=100)]
    window_days: Days

    @property
    def window(self) -> timedelta:
        """Return the window as a duration."""
        return timedelta(days=self.window_days)


class DormancyRules(Part):
    """Leads without any activity become dormant, then excluded from nurturing."""

    dormant_days: Days
    excluded_days: Days

    @model_validator(mode="after")
    def excluded_after_dormant(self) -> Self:
        """Return the rule if exclusion comes after dormancy."""
        if self.excluded_days <= self.dormant_days:
            raise ValueError("excluded_days must be longer than dormant_days")
        return self


class ScoringModel(Part):
    """Every tunable rule of the score (DESIGN.md section 3), under one version."""

    version: Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[\w.\-+]+$")]
    description: Annotated[str, Field(max_length=2000)] = ""
    behaviour: Behaviour
    fit: Fit
    engagement: Engagement
    tiers: Tiers
    surge: Surge
    dormancy: DormancyRules

    @model_validator(mode="after")
    def surge_window_within_reach_of_decay(self) -> Self:
        """Return the model if the surge window spans at most 500 half-lives."""
        if self.surge.window_days > SURGE_WINDOWS_PER_HALF_LIFE * self.behaviour.half_life_days:
            raise ValueError(f"surge.window_days ({self.surge.window_days:g}) may span at most "
                             f"{SURGE_WINDOWS_PER_HALF_LIFE} behaviour half-lives "
                             f"({self.behaviour.half_life_days:g} days each)")
        return self

    @model_validator(mode="after")
    def known_decision_makers(self) -> Self:
        """Return the model if decision makers name seniorities the title rules define."""
        known = {rule.seniority for rule in self.fit.titles} | {"staff"}
        unknown = sorted(self.engagement.decision_maker_seniorities - known)
        if unknown:
            raise ValueError(f"engagement.decision_maker_seniorities names unknown "
                             f"seniorities {unknown}; known: {sorted(known)}")
        return self


class ModelError(ValueError):
    """A scoring model document is not valid; the message names each bad field."""


def parse_model(text: str, origin: str = "model") -> ScoringModel:
    """Return the model a YAML (or JSON) document describes, or raise ModelError."""
    try:
        document = yaml.safe_load(text)
        return ScoringModel.model_validate(document)
    except yaml.YAMLError as error:
        raise ModelError(f"{origin} is not valid YAML: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(document)'}: {item['msg']}"
            for item in error.errors())
        raise ModelError(f"{origin} is not a valid scoring model: {problems}") from None


def load_model(path: Path) -> ScoringModel:
    """Return the model in the YAML file at ``path``, or raise ModelError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelError(f"cannot read scoring model {path}: {error}") from None
    return parse_model(text, origin=str(path))


class ModelOrigin(StrEnum):
    """Where a stored model version came from."""

    PACKAGED = "packaged"  # services/scoring/model.yaml, as the release shipped it
    FILE = "file"  # BATON_SCORING_MODEL_FILE
    API = "api"  # PUT /v1/model


# The languages a score's reasons can be worded in (services.scoring.domain.WORDINGS).
ReasonLocale = Literal["ja", "en"]


class ActiveModel:
    """The model new scores use, shared by the handlers, the API and the reload worker,
    and the language their reasons are worded in."""

    def __init__(self, model: ScoringModel, locale: ReasonLocale) -> None:
        self._model = model
        self.locale = locale

    @property
    def model(self) -> ScoringModel:
        """Return the model in use."""
        return self._model

    def replace(self, model: ScoringModel) -> None:
        """Use ``model`` for every score computed from now on."""
        self._model = model
