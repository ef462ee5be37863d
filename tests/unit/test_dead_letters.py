"""Dead letters as the consumer loop writes them and as ``baton dlq`` reads them back."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord

from baton_runtime.dead_letters import (
    MAX_ERROR_HEADER_BYTES,
    DeadLetter,
    NotADeadLetter,
    dead_letter,
)
from baton_runtime.kafka import MAX_REQUEST_SIZE, record_size
from schemas.envelope import EnvelopeError, KafkaRecord, encode
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


def dead_lettered(message: ConsumerRecord) -> KafkaRecord:
    """Return the dead letter of ``message`` for a handler that gave up after three tries."""
    return dead_letter(message, consumer_group="baton-scoring", event_id="event-1",
                       error=ValueError("壊れた"), attempts=3)


def message_whose_letter_would_be(size: int) -> ConsumerRecord:
    """Return a message (the same event, its JSON padded with blanks) whose dead letter, kept
    whole, would be ``size`` bytes as a Kafka record."""
    original = encode(lead_captured("大きい@example.co.jp"), source="/tests")
    whole = record_size(dead_lettered(as_consumed(original, 4, 17)))
    return as_consumed(original._replace(value=original.value + b" " * (size - whole)), 4, 17)


def test_a_letter_just_at_the_limit_keeps_the_whole_message() -> None:
    message = message_whose_letter_would_be(MAX_REQUEST_SIZE)
    written = dead_lettered(message)
    assert record_size(written) == MAX_REQUEST_SIZE
    letter = DeadLetter.from_record(as_consumed(written, 0, 0))
    assert (letter.original.value, letter.original.headers) == (message.value,
                                                                tuple(message.headers))
    assert letter.value_omitted is None


def test_a_letter_a_byte_over_the_limit_leaves_the_value_and_headers_on_their_topic() -> None:
    message = message_whose_letter_would_be(MAX_REQUEST_SIZE + 1)
    written = dead_lettered(message)
    assert record_size(written) <= MAX_REQUEST_SIZE
    assert (written.key, written.value) == (message.key, b"")
    assert all(name.startswith("baton_") for name, _ in written.headers)
    assert dict(written.headers)["baton_value_omitted"] == str(len(message.value)).encode()
    letter = DeadLetter.from_record(as_consumed(written, 1, 3))
    assert letter == DeadLetter(
        dead_letter_topic="lead.captured.dlq", dead_letter_partition=1, dead_letter_offset=3,
        consumer_group="baton-scoring", event_id="event-1", partition=4, offset=17,
        error_type="ValueError", error="ValueError: 壊れた", attempts=3,
        original=KafkaRecord("lead.captured", message.key, (), b""),
        value_omitted=len(message.value))


def test_a_message_with_huge_headers_and_a_small_value_gets_a_letter_within_the_limit() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    padded = original._replace(headers=(*original.headers,
                                        ("traceparent", b"0" * (MAX_REQUEST_SIZE - 1000))))
    written = dead_lettered(as_consumed(padded, 0, 0))
    assert record_size(written) <= MAX_REQUEST_SIZE
    assert [name for name, _ in written.headers if not name.startswith("baton_")] == []
    assert dict(written.headers)["baton_value_omitted"] == str(len(original.value)).encode()


def test_a_key_too_large_to_go_along_is_left_out_too() -> None:
    original = encode(lead_captured("a@example.co.jp"), source="/tests")
    huge_key = b"k" * (MAX_REQUEST_SIZE - 200)
    written = dead_lettered(as_consumed(original._replace(key=huge_key), 0, 0))
    assert record_size(written) <= MAX_REQUEST_SIZE
    assert (written.key, written.value) == (b"", b"")
    assert dict(written.headers)["baton_key_omitted"] == str(len(huge_key)).encode()
    assert DeadLetter.from_record(as_consumed(written, 0, 0)).value_omitted == len(
        original.value)


def test_a_letter_whose_omitted_value_size_is_not_a_number_is_refused() -> None:
    written = dead_lettered(message_whose_letter_would_be(MAX_REQUEST_SIZE + 1))
    garbled = written._replace(headers=tuple(
        (name, b"lots" if name == "baton_value_omitted" else value)
        for name, value in written.headers))
    with pytest.raises(NotADeadLetter, match="not a number"):
        DeadLetter.from_record(as_consumed(garbled, 0, 0))
