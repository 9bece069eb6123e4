"""Fault injection through the admin endpoint: what a client sees when Google throttles,
fails or disappears (errors guide: 403/429 rateLimitExceeded, 500 backendError, 503)."""

from __future__ import annotations

import json
import threading
import urllib.error
from typing import Any

import httplib2
import pytest
from googleapiclient.errors import HttpError

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import (
    ALICE,
    BOB,
    admin,
    credentials,
    error_body,
    fixture_error,
    service,
    timed_event,
)


def _status(calendar: Any) -> int:
    try:
        calendar.calendarList().list().execute()
    except HttpError as exc:
        return int(exc.status_code)
    return 200


def test_429_with_retry_after_for_a_count(calendar: Any, server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "429", "count": 2, "retryAfter": 3})
    for _ in range(2):
        with pytest.raises(HttpError) as caught:
            calendar.calendarList().list().execute()
        assert error_body(caught.value) == fixture_error("429_rateLimitExceeded")
        assert caught.value.resp["retry-after"] == "3"
    assert _status(calendar) == 200      # the count is used up


def test_403_rate_limit_has_googles_body(calendar: Any, server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "403", "count": 1})
    with pytest.raises(HttpError) as caught:
        calendar.events().list(calendarId="primary").execute()
    assert error_body(caught.value) == fixture_error("403_rateLimitExceeded")


def test_500_and_503(calendar: Any, server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "500", "count": 1})
    with pytest.raises(HttpError) as caught:
        calendar.calendarList().list().execute()
    assert error_body(caught.value) == fixture_error("500_backendError")
    admin(server, "/faults", {"kind": "503", "count": 1})
    with pytest.raises(HttpError) as caught:
        calendar.calendarList().list().execute()
    assert caught.value.status_code == 503
    assert error_body(caught.value)["error"]["errors"][0]["reason"] == "backendError"


def test_googleapiclient_retries_through_a_transient_fault(calendar: Any,
                                                          server: GoogleCalendarServer) -> None:
    # The client's own back-off (num_retries) retries 429/5xx; the stand-in must let the
    # retry through once the fault is spent. _sleep is the client's hook for its delay.
    admin(server, "/faults", {"kind": "503", "count": 2})
    request = calendar.calendarList().list()
    request._sleep = lambda seconds: None
    assert request.execute(num_retries=3)["items"]


def test_fault_for_one_user_leaves_others_alone(calendar: Any,
                                                server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "500", "user": BOB})
    bob = service(server, credentials(server, BOB))
    assert _status(bob) == 500
    assert _status(calendar) == 200
    admin(server, "/faults", method="DELETE")
    assert _status(bob) == 200


def test_rate_is_deterministic_for_a_seed(server: GoogleCalendarServer,
                                          calendar: Any) -> None:
    def run() -> list[int]:
        admin(server, "/faults", method="DELETE")
        admin(server, "/faults", {"kind": "500", "rate": 0.5, "seed": 42})
        return [_status(calendar) for _ in range(12)]

    first = run()
    assert first == run()
    assert 200 in first and 500 in first


def test_outage_drops_the_connection(calendar: Any, server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "outage"})
    with pytest.raises((httplib2.HttpLib2Error, ConnectionError, OSError)):
        calendar.calendarList().list().execute()
    # The admin endpoint stays reachable during an outage, so it can be ended.
    status, active = admin(server, "/faults", method="GET")
    assert status == 200 and [f["kind"] for f in active] == ["outage"]
    admin(server, "/faults", method="DELETE")
    assert _status(calendar) == 200


def test_latency_fault_still_answers(calendar: Any, server: GoogleCalendarServer) -> None:
    admin(server, "/faults", {"kind": "latency", "latencyMs": 50, "count": 1})
    assert _status(calendar) == 200
    _, active = admin(server, "/faults", method="GET")
    assert active == []   # consumed by that one request


@pytest.mark.parametrize("spec", [{"kind": "418"}, {"kind": "429", "rate": 2},
                                  {"kind": "500", "count": 0}, ["not", "an", "object"]])
def test_bad_fault_specs_are_refused(server: GoogleCalendarServer, spec: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(server, "/faults", spec)
    assert caught.value.code == 400


def test_admin_is_not_under_the_api_path(calendar: Any, server: GoogleCalendarServer) -> None:
    # A user's authorised client aimed at an admin-looking API path reaches no admin
    # handler: admin lives under /_admin, a prefix no Google path uses.
    response, content = calendar._http.request(f"{server.url}/calendar/v3/_admin/faults")
    assert response.status == 404
    assert json.loads(content) == fixture_error("404_notFound")


def test_a_lost_answer_carries_the_write_out(calendar: Any, server: GoogleCalendarServer) -> None:
    # Reads pass untouched (and use none of the count); the insert is done, its answer
    # lost. httplib2 sends a request once more after a dropped connection: both answers
    # are lost here, and the resent insert finds its id taken.
    admin(server, "/faults", {"kind": "lostAnswer", "count": 2})
    assert _status(calendar) == 200
    body = {**timed_event("Lost"), "id": "dropped0001"}
    with pytest.raises((httplib2.HttpLib2Error, ConnectionError, OSError)):
        calendar.events().insert(calendarId="primary", body=body).execute()
    _, active = admin(server, "/faults", method="GET")
    assert active == []
    listed = calendar.events().list(calendarId="primary").execute()["items"]
    assert [(e["id"], e["summary"]) for e in listed] == [("dropped0001", "Lost")]


def test_a_held_answer_waits_for_the_faults_to_be_cleared(
    calendar: Any, server: GoogleCalendarServer
) -> None:
    # The write is done while its client still waits: a test can kill the client there.
    admin(server, "/faults", {"kind": "heldAnswer", "count": 1})
    outcome: list[BaseException | None] = []

    def insert() -> None:
        try:
            calendar.events().insert(calendarId="primary", body=timed_event("Held")).execute()
            outcome.append(None)
        except (httplib2.HttpLib2Error, ConnectionError, OSError) as exc:
            outcome.append(exc)

    writer = threading.Thread(target=insert)
    writer.start()
    other = service(server, credentials(server, ALICE))
    for _ in range(500):  # a fault whose count is used up leaves the list
        _, active = admin(server, "/faults", method="GET")
        if not active:
            break
        writer.join(0.01)
    assert active == [] and writer.is_alive()
    assert [e["summary"] for e in other.events().list(calendarId="primary").execute()["items"]] == [
        "Held"
    ]
    # cleared: the answer is dropped; httplib2 sends the insert again, and it is answered
    admin(server, "/faults", method="DELETE")
    writer.join(5)
    assert not writer.is_alive() and outcome == [None]
    held = other.events().list(calendarId="primary").execute()["items"]
    assert sorted(e["summary"] for e in held) == ["Held", "Held"]
