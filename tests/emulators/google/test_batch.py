"""Batch requests through googleapiclient's BatchHttpRequest (batch guide).

How to point a batch at the stand-in (google-api-python-client 2.x): `client_options=
{"api_endpoint": ...}` moves ordinary calls only. `service.new_batch_http_request()` builds
its URI from the discovery document's `rootUrl` + `batchPath`
(`https://www.googleapis.com/batch/calendar/v3`), so create the batch yourself:
`BatchHttpRequest(callback=..., batch_uri=server.batch_uri)`.
"""

from __future__ import annotations

from typing import Any

from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import timed_event


def test_new_batch_http_request_would_go_to_google(calendar: Any) -> None:
    # The pitfall this file documents: the service's own batch ignores api_endpoint.
    assert calendar.new_batch_http_request()._batch_uri == (
        "https://www.googleapis.com/batch/calendar/v3")


def test_batch_insert_pairs_answers_by_content_id(calendar: Any,
                                                 server: GoogleCalendarServer) -> None:
    answers: dict[str, tuple[Any, Exception | None]] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        answers[request_id] = (response, exception)

    batch = BatchHttpRequest(callback=collect, batch_uri=server.batch_uri)
    for n in range(3):
        batch.add(calendar.events().insert(calendarId="primary", sendUpdates="none",
                                           body=timed_event(f"batched {n}", id=f"batch0000{n}")),
                  request_id=f"ews-item-{n}")
    # The client matches each answer to its request through the response- Content-ID; a
    # wrong pairing would hand event n's answer to request m.
    batch.add(calendar.events().insert(calendarId="primary", body=timed_event(id="batch00001")),
              request_id="ews-item-dup")
    batch.execute()
    for n in range(3):
        response, exception = answers[f"ews-item-{n}"]
        assert exception is None
        assert (response["id"], response["summary"]) == (f"batch0000{n}", f"batched {n}")
    response, exception = answers["ews-item-dup"]
    # One failing part fails alone, with its own status and Google's body.
    assert response is None and isinstance(exception, HttpError)
    assert exception.status_code == 409
    listed = calendar.events().list(calendarId="primary").execute()["items"]
    assert sorted(i["id"] for i in listed) == ["batch00000", "batch00001", "batch00002"]
    assert [c.send_updates for c in server.state.calls] == ["none"] * 3


def test_batch_mixes_methods(calendar: Any, server: GoogleCalendarServer) -> None:
    created = calendar.events().insert(calendarId="primary", body=timed_event()).execute()
    answers: dict[str, Any] = {}
    batch = BatchHttpRequest(callback=lambda rid, resp, exc: answers.update({rid: (resp, exc)}),
                             batch_uri=server.batch_uri)
    batch.add(calendar.events().patch(calendarId="primary", eventId=created["id"],
                                      body={"summary": "patched"}), request_id="patch")
    batch.add(calendar.events().get(calendarId="primary", eventId="missing00"),
              request_id="get")
    batch.add(calendar.events().delete(calendarId="primary", eventId=created["id"]),
              request_id="delete")
    batch.execute()
    assert answers["patch"][0]["summary"] == "patched"
    assert answers["get"][1].status_code == 404
    assert answers["delete"][1] is None
    got = calendar.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert got["status"] == "cancelled"
