"""Title keywords inside a phrase naming another role: the president's secretary is staff."""

from __future__ import annotations

import pytest

from services.scoring.domain import LeadFacts, fit_reasons, is_decision_maker, mentions, seniority
from services.scoring.model import DEFAULT_MODEL_FILE, load_model

MODEL = load_model(DEFAULT_MODEL_FILE)


@pytest.mark.parametrize(("title", "rank", "decides"), [
    ("社長室 担当", "staff", False),  # staff of the president's office
    ("社長秘書", "staff", False),
    ("役員秘書", "staff", False),
    ("取締役会事務局 担当", "staff", False),  # the board's secretariat
    ("会長秘書", "staff", False),
    ("執行役員秘書", "staff", False),  # its 役員 lies in 役員秘書, so 執行役員 does not count
    ("営業代表", "staff", False),  # a sales representative
    ("本部長秘書", "staff", False),
    ("事業部長秘書", "staff", False),
    ("専務秘書", "staff", False),
    ("常務秘書", "staff", False),
    ("取締役秘書", "staff", False),
    ("代表秘書", "staff", False),
    ("Executive Assistant to the CFO", "staff", False),
    ("Assistant to the CTO", "staff", False),
    ("EA to CEO", "staff", False),
    ("PA to the CEO", "staff", False),
    ("代表取締役秘書", "staff", False),
    ("代表取締役社長秘書", "staff", False),
    ("専務取締役秘書", "staff", False),
    ("常務取締役秘書", "staff", False),
    ("取締役社長秘書", "staff", False),
    ("EA to the CTO", "staff", False),
    ("社長室　担当", "staff", False),  # an ideographic space, NFKC
    ("Executive Assistant to the CEO", "staff", False),
    ("Assistant to the President", "staff", False),
    ("EXECUTIVE ASSISTANT TO THE PRESIDENT AND CEO", "staff", False),
    ("Secretary to the CEO", "staff", False),
    ("Office Manager, Office of the CEO", "manager", False),
    ("社長室 室長", "manager", False),  # heads the president's office
    ("社長室長", "manager", False),
    ("秘書室長", "manager", False),
    ("取締役 兼 社長室長", "executive", True),  # the 取締役 outside the phrase counts
    ("代表取締役社長", "executive", True),
    ("社長室 担当取締役", "executive", True),
    ("常務取締役 経営企画本部長", "executive", True),
    ("President & CEO", "executive", True),
    ("Vice President, Sales", "executive", True),
    ("Chief of Staff, Office of the President", "executive", True),
    ("営業部 部長", "manager", False),
    ("Lead Generation Specialist", "staff", False),
    ("Head of Lead Generation", "manager", False),
    ("Head Office Administrator", "staff", False),
])
def test_a_keyword_inside_a_phrase_naming_another_role_does_not_rank_the_title(
        title: str, rank: str, decides: bool) -> None:
    assert (seniority(title, MODEL), is_decision_maker(title, MODEL)) == (rank, decides)


@pytest.mark.parametrize(("title", "code", "points"), [
    ("学生課 担当", "fit.title.staff", 3),  # a university's student affairs office
    ("学生支援センター 課長", "fit.title.manager", 10),
    ("留学生課 担当", "fit.title.staff", 3),
    ("Student Services Manager", "fit.title.manager", 10),
    ("Director of Student Affairs", "fit.title.executive", 15),
    ("学生", "fit.student", -30),
    ("大学院生", "fit.student", -30),
    ("留学生", "fit.student", -30),
    ("Graduate Student", "fit.student", -30),
    ("学生課 アルバイト学生", "fit.student", -30),  # a student working in that office
])
def test_a_student_keyword_inside_a_phrase_naming_an_office_is_no_student(
        title: str, code: str, points: float) -> None:
    [reason] = fit_reasons(LeadFacts(title, free_mail=False), MODEL)
    assert (reason.code, reason.points) == (code, points)


def test_phrases_match_as_keywords_do_ascii_as_whole_words_and_japanese_anywhere() -> None:
    assert mentions("CEO Assistant", ("ceo",), ("o assistant",)), "not a word there"
    assert not mentions("ceo assistant", ("ceo",), ("ceo assistant",))
    assert not mentions("元社長室付", ("社長",), ("社長室",))
    assert mentions("社長室 社長", ("社長",), ("社長室",)), "the second 社長 counts"
    assert mentions("社長室", ("社長",), ())
