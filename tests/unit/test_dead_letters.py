"""Dead letters as the consumer loop writes them and as ``baton dlq`` reads them back."""

from __future__ import annotations

import pytest

from baton_runtime.dead_letters import (
    MAX_ERROR_HEADER_BYTES,
    DeadLetter,
    NotADeadLetter,
    dead_letter,
)
from schemas.envelope import EnvelopeError, encode
from tests.support.kafka import as_consumed, lead_captured


def test_a_dead_letter_reads_back_as_the_message_it_was_with_who_gave_up_and_why() -> None:
    original = encode(lead_captured("佐藤@example.co.jp"), source="/tests")
    written = dead_letter(as_consumed(original, 4, 17), consumer_group="baton-scoring",
                          event_id="event-1", error=ValueError("壊れた\nprofile"), attempts=5)
    letter = DeadLetter.from_record(as_consumed(written, 1, 3))
    assert written.topic == "lead.captured.dlq"
    assert letter == DeadLetter(
        dead_letter_topic="lead.captured.dlq", dead_letter_partition=1, dead_letter_offset=3,
        consumer_group="baton-scoring", event_id="event-1", partition=4, offset=17,
        error_type="ValueError", error="ValueError: 壊れた\nprofile", attempts=5,
        original=original)


def test_a_long_error_is_cut_to_what_a_header_holds() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    written = dead_letter(as_consumed(original, 0, 0), consumer_group="g", event_id="e",
                          error=RuntimeError("x" * 10_000), attempts=1)
    assert len(dict(written.headers)["baton_error"]) == MAX_ERROR_HEADER_BYTES


def test_a_record_without_the_dead_letter_headers_is_refused_naming_what_is_missing() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    with pytest.raises(NotADeadLetter, match=r"lead.captured\[2\]@9 has no baton_consumer_group"):
        DeadLetter.from_record(as_consumed(original, 2, 9))


def test_a_letter_written_before_letters_named_their_event_id_gets_the_id_claimed_then() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    for error, claimed in ((ValueError("handler"), dict(original.headers)["ce_id"].decode()),
                           (EnvelopeError("undecodable"), "undecodable:lead.captured:2:9")):
        written = dead_letter(as_consumed(original, 2, 9), consumer_group="g", event_id="x",
                              error=error, attempts=1)
        older = written._replace(headers=tuple(
            (name, value) for name, value in written.headers if name != "baton_event_id"))
        assert DeadLetter.from_record(as_consumed(older, 0, 0)).event_id == claimed


def test_a_message_with_a_header_that_has_no_value_is_dead_lettered_and_reads_back() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    consumed = as_consumed(original, 0, 5)
    consumed.headers.append(("traceparent", None))  # Kafka lets a header have no value
    written = dead_letter(consumed, consumer_group="g", event_id="e",
                          error=RuntimeError("handler failed"), attempts=3)
    letter = DeadLetter.from_record(as_consumed(written, 0, 0))
    assert letter.original.headers == (*original.headers, ("traceparent", b""))
    assert letter.event_id == "e"
