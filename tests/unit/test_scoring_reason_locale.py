"""A score's reasons worded in Japanese: the same codes, points and order, Japanese labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import TouchpointType
from services.scoring.domain import (
    ENGLISH,
    JAPANESE,
    Activity,
    Colleague,
    LeadFacts,
    score_lead,
)
from services.scoring.model import DEFAULT_MODEL_FILE, ScoringModel, load_model
from services.scoring.settings import ScoringSettings

MODEL = load_model(DEFAULT_MODEL_FILE)
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T = TouchpointType
EXEC_AT_ICP = LeadFacts(title="代表取締役", free_mail=False, industry="製造業",
                        employee_band="500-999")
LATIN = frozenset("abcdefghijklmnopqrstuvwxyz")


def at(days_ago: float, type_: TouchpointType, asset: str | None = None,
       interacted: bool = False) -> Activity:
    return Activity(type_, NOW - timedelta(days=days_ago), asset, interacted)


def test_a_hot_lead_s_reasons_read_in_japanese_with_the_same_codes_and_points() -> None:
    ledger = [at(3, T.PAGE_VIEW_PRICING), at(2, T.PAGE_VIEW_PRICING),
              at(2, T.DOWNLOAD_IMPLEMENTATION_GUIDE, "guide-1"),
              at(1, T.DOWNLOAD_INDUSTRY_REPORT, "report-2"),
              at(1, T.WEBINAR_PRODUCT_DEMO, interacted=True), at(0, T.INQUIRY_DEMO_REQUEST)]
    colleagues = [Colleague(NOW - timedelta(days=1), True)]
    english = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL, colleagues=colleagues)
    japanese = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL, colleagues=colleagues,
                          language="ja")

    assert japanese._replace(reasons=()) == english._replace(reasons=())
    assert ([(r.code, r.points) for r in japanese.reasons]
            == [(r.code, r.points) for r in english.reasons])
    assert [r.label for r in japanese.reasons] == [
        "役職: 代表取締役", "業種: 製造業", "従業員規模: 500-999",
        "同じ企業で関与中の他の担当者 1名", "決裁者が関与中",
        "ページ閲覧: 料金（2026-11-17）", "資料ダウンロード: 導入ガイド (guide-1)（2026-11-18）",
        "ページ閲覧: 料金（2026-11-18）（再閲覧）",
        "資料ダウンロード: 業界レポート (report-2)（2026-11-19）（追加ダウンロード）",
        "ウェビナー: 製品デモ（2026-11-19）（質問・チャットあり）",
        "問い合わせ: デモ依頼（2026-11-20）", "スコアを上限の100に調整"]


def test_free_mail_competitors_and_summed_touchpoints_read_in_japanese() -> None:
    free_mail = score_lead(LeadFacts(title=None, free_mail=True), [], NOW, MODEL,
                           language="ja")
    document = MODEL.model_dump(mode="json")
    document["fit"]["competitors"] = {"domains": ["rival.example"], "company_names": []}
    competitor = score_lead(LeadFacts(title=None, free_mail=False, email_domain="rival.example"),
                            [], NOW, ScoringModel.model_validate(document), language="ja")
    many = score_lead(LeadFacts(title=None, free_mail=False),
                      [at(day / 10, T.EMAIL_OPEN) for day in range(60)], NOW, MODEL,
                      language="ja")

    assert [r.label for r in free_mail.reasons] == ["フリーメールアドレス", "スコアを下限の0に調整"]
    assert competitor.reasons[-1].label == "競合: rival.example"
    assert many.reasons[-1].label == "その他の小さい・古い接点 10件"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 200), st.sampled_from(list(TouchpointType)),
                          st.sampled_from([None, "asset-1"]), st.booleans()), max_size=30))
def test_every_japanese_label_is_worded_in_japanese(
        touchpoints: list[tuple[float, TouchpointType, str | None, bool]]) -> None:
    ledger = [at(days, kind, asset, interacted) for days, kind, asset, interacted in touchpoints]
    result = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL, language="ja")

    for reason in result.reasons:
        words = reason.label.replace("asset-1", "").casefold()
        assert not LATIN & set(words), reason


def test_every_touchpoint_has_a_japanese_name_and_scoring_speaks_japanese_by_default() -> None:
    assert set(JAPANESE.touchpoints) == set(ENGLISH.touchpoints) == set(TouchpointType)
    settings = ScoringSettings(database_url="postgresql://baton@127.0.0.1/baton",
                               kafka_bootstrap_servers="127.0.0.1:19092")
    assert settings.scoring_reason_locale == "ja"


def test_japanese_labels_date_touchpoints_in_japan_time_and_english_ones_in_utc() -> None:
    # 00:30 on 20 November in Tokyo is still 19 November in UTC.
    ledger = [Activity(T.INQUIRY_DEMO_REQUEST,
                       datetime(2026, 11, 20, 0, 30, tzinfo=timezone(timedelta(hours=9))))]
    japanese = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL, language="ja")
    english = score_lead(EXEC_AT_ICP, ledger, NOW, MODEL)

    assert japanese.reasons[3].label == "問い合わせ: デモ依頼（2026-11-20）"
    assert english.reasons[3].label == "inquiry: demo request on 2026-11-19"
