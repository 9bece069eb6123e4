"""The streamed SOAP documents of GetStreamingEvents, split from chunks of any size
(sync/backends/notifications.py `envelopes`: exchangelib's reader takes one byte a read,
about 35 ms of CPU a notification). A document is yielded as soon as its end tag is in,
whatever the chunks' boundaries; a document that never ends is bounded."""

from __future__ import annotations

import pytest
from lxml import etree

from sync.backends.notifications import envelopes

HEARTBEAT = (
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    b"<m:GetStreamingEventsResponse xmlns:m=\"m\"><m:ConnectionStatus>OK</m:ConnectionStatus>"
    b"</m:GetStreamingEventsResponse></s:Body></s:Envelope>"
)
NOTIFICATION = (
    b"<soap:Envelope xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'>"
    b"<soap:Body><Notification a='x>y'>Envelope &lt;/Envelope&gt;</Notification></soap:Body>"
    b"</soap:Envelope >"
)
PROLOGUE = b"<?xml version='1.0' encoding='utf-8'?>\n"


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 100_000])
def test_every_document_whatever_the_chunks(size: int) -> None:
    stream = HEARTBEAT + b"\r\n" + NOTIFICATION + HEARTBEAT
    documents = list(envelopes(_split(stream, size)))
    assert documents == [PROLOGUE + HEARTBEAT, PROLOGUE + NOTIFICATION, PROLOGUE + HEARTBEAT]
    for document in documents:
        etree.fromstring(document)  # each one whole, as exchangelib parses it


def test_a_document_is_yielded_before_the_next_chunk_is_asked_for() -> None:
    asked: list[int] = []

    def chunks() -> object:
        for number, chunk in enumerate(_split(HEARTBEAT + NOTIFICATION, len(HEARTBEAT))):
            asked.append(number)
            yield chunk

    reader = envelopes(chunks())  # type: ignore[arg-type]
    assert next(reader) == PROLOGUE + HEARTBEAT
    assert asked == [0]  # the stream is not read ahead of what has arrived


def test_a_document_that_never_ends_is_refused_past_the_limit() -> None:
    endless = [b"<s:Envelope xmlns:s='s'><s:Body>"] + [b"x" * 1000] * 20
    with pytest.raises(ValueError, match="longer than 10000 bytes"):
        list(envelopes(endless, limit=10_000))


def test_noise_between_documents_is_skipped_and_counts_for_no_document() -> None:
    noise = [b"noise </s:Envelope> " * 1000] * 20  # more than the limit, never a document
    assert list(envelopes([*noise, HEARTBEAT], limit=1000)) == [PROLOGUE + HEARTBEAT]
