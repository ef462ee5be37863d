"""The scoring model document: the packaged defaults, validation and its error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from baton_runtime.settings import SettingsError, load_settings
from schemas.events import TouchpointType
from services.scoring.model import (
    DEFAULT_MODEL_FILE,
    ModelError,
    ScoringModel,
    compact,
    load_model,
    normalise,
    parse_model,
)
from services.scoring.settings import ScoringSettings

MODEL = load_model(DEFAULT_MODEL_FILE)


def document(**changes: Any) -> dict[str, Any]:
    """Return the packaged model as a plain document with some sections' fields replaced."""
    data = MODEL.model_dump(mode="json")
    for section, fields in changes.items():
        data[section] = {**data[section], **fields} if isinstance(fields, dict) else fields
    return data


def with_keywords(path: str, keywords: list[str]) -> dict[str, Any]:
    """Return the packaged model as a document whose list at ``path`` (dotted) is replaced.

    A rule's phrases go with its keywords: each must hold one of the rule's keywords.
    """
    data = MODEL.model_dump(mode="json")
    *parents, last = path.split(".")
    section: Any = data
    for key in parents:
        section = section[int(key)] if isinstance(section, list) else section[key]
    if last == "keywords":
        section["except_in"] = []
    section[last] = keywords
    return data


def error_of(data: object) -> str:
    with pytest.raises(ModelError) as raised:
        parse_model(yaml.safe_dump(data, allow_unicode=True))
    return str(raised.value)


def test_the_packaged_model_holds_the_design_defaults() -> None:
    points = MODEL.behaviour.points
    assert points[TouchpointType.INQUIRY_QUOTE_REQUEST] == 60
    assert points[TouchpointType.PAGE_VIEW_PRICING] == 10
    assert set(points) == set(TouchpointType), "every touchpoint is priced explicitly"
    assert MODEL.behaviour.half_life_days == 30
    assert (MODEL.tiers.a, MODEL.tiers.b) == (80, 50)
    assert (MODEL.engagement.per_contact_points, MODEL.engagement.max_points,
            MODEL.engagement.decision_maker_points) == (5, 15, 10)
    assert [(r.seniority, r.points) for r in MODEL.fit.titles] == [("executive", 15),
                                                                    ("manager", 10)]
    assert (MODEL.fit.staff_points, MODEL.fit.student.points) == (3, -30)
    assert (MODEL.dormancy.dormant_days, MODEL.dormancy.excluded_days) == (90, 180)


def test_a_model_survives_json_and_yaml_round_trips_with_japanese_intact() -> None:
    as_json = MODEL.model_dump(mode="json")
    assert ScoringModel.model_validate(as_json) == MODEL
    assert parse_model(yaml.safe_dump(as_json, allow_unicode=True)) == MODEL
    assert "製造業" in as_json["fit"]["industries"]["values"]


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"tiers": {"a": 50, "b": 60}}, "tiers", "must be above tier B"),
    ({"behaviour": {"half_life_days": 0}}, "behaviour.half_life_days", "greater than 0"),
    # Shorter ones scored every lead with a division by zero, dead-lettering them all.
    ({"behaviour": {"half_life_days": 1e-12}}, "behaviour.half_life_days", "at least an hour"),
    ({"surge": {"points": 20, "window_days": 7}, "behaviour": {"half_life_days": 0.02}},
     "behaviour.half_life_days", "at least an hour"),
    ({"surge": {"points": 20, "window_days": 600}, "behaviour": {"half_life_days": 1}},
     "(document)", "at most 500 behaviour half-lives"),
    ({"behaviour": {"points": {"page_view.nowhere": 5}}}, "page_view.nowhere.[key]",
     "Input should be"),
    ({"behaviour": {"points": {"email.open": -1}}}, "behaviour.points.email.open",
     "greater than or equal to 0"),
    ({"engagement": {"decision_maker_seniorities": ["shogun"]}}, "(document)", "shogun"),
    ({"dormancy": {"dormant_days": 200}}, "dormancy", "excluded_days must be longer"),
    ({"surge": {"points": 20, "window_days": 7, "typo": 1}}, "surge.typo", "not permitted"),
    ({"version": "2026 new"}, "version", "should match pattern"),
    ({"fit": {"student": {"points": -30, "keywords": ["学生"], "except_in": ["社長室"]}}},
     "fit.student", "'社長室' holds none of this rule's keywords"),
    ({"fit": {"student": {"points": -30, "keywords": ["学生"], "except_in": ["学生"]}}},
     "fit.student", "'学生' is one of this rule's keywords"),
    # An ASCII keyword counts as a whole word only: "doctoral" holds no "cto".
    ({"fit": {"student": {"points": -30, "keywords": ["cto"], "except_in": ["doctoral"]}}},
     "fit.student", "'doctoral' holds none of this rule's keywords"),
])
def test_an_invalid_model_is_refused_naming_the_field(changes: dict[str, Any], field: str,
                                                      message: str) -> None:
    error = error_of(document(**changes))
    assert f"{field}: " in error and message in error, error


def test_a_model_that_is_not_yaml_or_misses_sections_is_refused() -> None:
    with pytest.raises(ModelError, match="not valid YAML"):
        parse_model("version: [unclosed")
    assert "fit: Field required" in error_of({"version": "x"})


def test_a_bad_model_file_stops_start_up_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "model.yaml"
    bad.write_text(yaml.safe_dump(document(tiers={"a": 40}), allow_unicode=True),
                   encoding="utf-8")
    monkeypatch.setenv("BATON_DATABASE_URL", "postgresql://baton@localhost/baton")
    monkeypatch.setenv("BATON_KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    monkeypatch.setenv("BATON_SCORING_MODEL_FILE", str(bad))
    with pytest.raises(SettingsError, match=r"BATON_SCORING_MODEL_FILE .*tier A's threshold"):
        load_settings(ScoringSettings)
    monkeypatch.setenv("BATON_SCORING_MODEL_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="BATON_SCORING_MODEL_FILE"):
        load_settings(ScoringSettings)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(document(version="custom-1"), allow_unicode=True),
                    encoding="utf-8")
    monkeypatch.setenv("BATON_SCORING_MODEL_FILE", str(good))
    assert load_settings(ScoringSettings).scoring_model().version == "custom-1"


KEYWORD_FIELDS = ("fit.titles.0.keywords", "fit.industries.values", "fit.employee_bands.values",
                  "fit.disposable_domains.values", "fit.student.keywords",
                  "fit.competitors.domains", "fit.competitors.company_names",
                  "engagement.decision_maker_seniorities")
PHRASE_FIELDS = ("fit.titles.0.except_in", "fit.student.except_in")


@pytest.mark.parametrize("path", KEYWORD_FIELDS + PHRASE_FIELDS)
@pytest.mark.parametrize(("keyword", "message"), [
    (" ", "blank: write the keyword or phrase, or remove the entry"),
    ("\u3000\t", "blank: write"),  # an ideographic space is a space once NFKC
    ("\ufdfa" * 10, "at most 100"),  # 10 characters, 180 once NFKC
])
def test_a_keyword_is_measured_once_normalised(path: str, keyword: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        ScoringModel.model_validate(with_keywords(path, ["ok", keyword]))
    [problem] = raised.value.errors()
    assert ".".join(map(str, problem["loc"])) == f"{path}.1", problem
    assert message in problem["msg"], problem


def test_a_phrase_in_which_keywords_do_not_count_is_stored_normalised() -> None:
    data = with_keywords("fit.titles.0.except_in", [" ＡＳＳＩＳＴＡＮＴ TO THE CEO ", "社長室"])
    assert ScoringModel.model_validate(data).fit.titles[0].except_in == (
        "assistant to the ceo", "社長室")


def test_phrases_and_listed_values_are_stored_without_spaces_between_japanese_words() -> None:
    data = with_keywords("fit.titles.0.except_in", ["社長　秘書", "Assistant  to the CEO"])
    assert ScoringModel.model_validate(data).fit.titles[0].except_in == (
        "社長秘書", "assistant to the ceo")
    data = with_keywords("fit.industries.values", ["情報 通信業", "IT  services", "IT サービス"])
    assert ScoringModel.model_validate(data).fit.industries.values == {
        "情報通信業", "it services", "itサービス"}
    # A keyword keeps its spaces: it is searched for in titles, where a space between two
    # Japanese words ends one of them.
    data = with_keywords("fit.titles.0.keywords", ["代表 取締役"])
    assert ScoringModel.model_validate(data).fit.titles[0].keywords == ("代表 取締役",)


def test_a_phrase_holds_its_rule_s_keyword_whatever_spaces_either_has() -> None:
    data = with_keywords("fit.titles.0.keywords", ["代表 取締役"])
    data["fit"]["titles"][0]["except_in"] = ["代表取締役 秘書"]
    assert ScoringModel.model_validate(data).fit.titles[0].except_in == ("代表取締役秘書",)


@settings(max_examples=300, deadline=None)
@given(st.text(st.one_of(st.characters(), st.sampled_from(" \u3000\t社長ぁァ゛゜\u3099ｶﾞaZ9"))))
def test_normalising_or_compacting_twice_changes_nothing(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)
    assert compact(compact(text)) == compact(text)


def test_a_title_rule_s_phrase_must_hold_one_of_its_keywords() -> None:
    data = with_keywords("fit.titles.1.except_in", ["社長室"])  # the manager rule's
    assert "fit.titles.1: Value error, except_in: '社長室' holds none of this rule's keywords" in (
        error_of(data))


def test_a_keyword_of_up_to_100_characters_once_normalised_is_accepted() -> None:
    keywords = [" " + "a" * 100 + " ", "\ufdfa" * 5]  # 102 with its spaces; 5, 90 once NFKC
    model = ScoringModel.model_validate(with_keywords("fit.student.keywords", keywords))
    assert model.fit.student.keywords == ("a" * 100, "صلى الله عليه وسلم" * 5)


keyword_lists = st.lists(st.text(st.one_of(st.characters(), st.sampled_from(" \u3000\ufdfaßǰ¨")),
                                 max_size=110), max_size=3)


# Decision makers must name known seniorities, so random text there would only be refused.
@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KEYWORD_FIELDS[:-1]), keyword_lists)
def test_a_model_that_validates_validates_again_from_its_own_json(path: str,
                                                                 keywords: list[str]) -> None:
    try:
        model = ScoringModel.model_validate(with_keywords(path, keywords))
    except ValidationError:
        return
    assert ScoringModel.model_validate(model.model_dump(mode="json")) == model
