"""The addon loaded as mitmdump loads it (taddons + the script), writing to the Google
stand-in through the real google-api-python-client."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from google.oauth2.credentials import Credentials as Credentials_
from googleapiclient.discovery import build
from mitmproxy import exceptions
from mitmproxy.test import taddons

from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from tests.addon.conftest import (
    ADDON,
    CalsyncLog,
    create_request,
    delete_request,
    envelope,
    ews_flow,
    long_id,
    response,
    update_request,
    write_config,
)
from tests.sync.conftest import ews_account


def events(server: GoogleCalendarServer, user: str, **params: Any) -> list[dict[str, Any]]:
    """What the user's primary calendar holds, read through the real client."""
    service = build(
        "calendar",
        "v3",
        credentials=Credentials(token=user),
        static_discovery=True,
        client_options={"api_endpoint": server.api_endpoint},
    )
    result = service.events().list(calendarId="primary", **params).execute()
    return list(result.get("items", []))


def calls(server: GoogleCalendarServer) -> list[dict[str, Any]]:
    with urllib.request.urlopen(server.url + "/_admin/calls") as reply:
        return list(json.load(reply))


def load(tctx: Any, config: Path) -> Any:
    """The script's addon, configured as mitmdump's --set would. (tctx.script registers
    the addon's name but keeps it out of the hook chain, so an options update does not
    reach it: call configure as the option change would.)"""
    addon = tctx.script(str(ADDON)).addons[0]
    tctx.options.update(calsync_config=str(config))
    addon.configure({"calsync_config"})
    return addon


class Harness:
    """The addon inside a taddons context, configured for the stand-in.

    `observed` holds what `Observer.observe` returned for each exchange the hooks handed to
    the observing thread (the outbox ids it recorded), in order: the evidence that a flow
    was read and judged, not merely left alone. (A pass-through recorder: observe runs as
    it is.)"""

    def __init__(self, tctx: Any, config: Path) -> None:
        self.tctx = tctx
        self.addon = load(tctx, config)
        self.observed: list[list[int]] = []
        observer = self.addon.observer
        observe = observer.observe

        def recorded(exchange: Any) -> list[int]:
            ids: list[int] = observe(exchange)
            self.observed.append(ids)
            return ids

        observer.observe = recorded

    def see(self, request: bytes, reply: bytes, **kwargs: Any) -> Any:
        flow = ews_flow(request, reply, **kwargs)
        before = (flow.request.get_state(), flow.response.get_state())
        self.addon.request(flow)
        self.addon.response(flow)
        assert self.addon.flush()  # the observing thread has recorded it
        # fail-open and read-only: the flow is exactly as it was
        assert (flow.request.get_state(), flow.response.get_state()) == before
        return flow

    def drain(self) -> int:
        return asyncio.run(self.addon.mirror.drain())

    def control(self, google: GoogleCalendarServer) -> list[str]:
        """alice creates "Control" after the flows under test: it must be recorded and reach
        her Google calendar (the observing thread is alive and took everything before it in
        order). Her calendar's summaries, sorted."""
        item = long_id("control")
        self.see(create_request("Control"), response("CreateItem", item))
        assert self.observed[-1] != [], "the control flow was not recorded"
        assert self.drain() == 1
        return sorted(e["summary"] for e in events(google, "alice@example.com"))

    def close(self) -> None:
        """Shut the addon down as mitmdump does (its threads end with the test), unless the
        test did. A bug in the worker is quarantined, not raised: one quarantined entry
        fails the test too."""
        if self.addon.store is None:
            return
        try:
            assert self.addon.store.quarantined() == []
        finally:
            asyncio.run(self.addon.done())


@pytest.fixture
def harness(google: GoogleCalendarServer, tmp_path: Path) -> Iterator[Harness]:
    with taddons.context() as tctx:
        harness = Harness(tctx, write_config(tmp_path, google))
        yield harness
        harness.close()


def test_create_update_delete_reach_google(harness: Harness, google: GoogleCalendarServer) -> None:
    first, second = long_id("first"), long_id("second")
    harness.see(create_request("Standup", "Retro"), response("CreateItem", first, second))
    assert harness.drain() == 2
    by_summary = {e["summary"]: e for e in events(google, "alice@example.com")}
    assert set(by_summary) == {"Standup", "Retro"}
    standup = by_summary["Standup"]
    assert standup["id"] == event_id_for(first)  # deterministic: a retry cannot duplicate
    assert standup["start"] == {
        "dateTime": "2026-03-02T09:00:00+01:00",
        "timeZone": "Europe/Berlin",
    }
    assert standup["location"] == "Room 4"
    assert standup["extendedProperties"]["private"]["calsync_ews_item_id"] == first

    harness.see(
        update_request(first, subject="Daily standup", delete_location=True),
        response("UpdateItem", first),
    )
    assert harness.drain() == 1
    (updated,) = [e for e in events(google, "alice@example.com") if e["id"] == standup["id"]]
    assert updated["summary"] == "Daily standup"
    assert "location" not in updated
    assert updated["etag"] != standup["etag"]

    harness.see(delete_request(first), response("DeleteItem", None))
    assert harness.drain() == 1
    remaining = events(google, "alice@example.com")
    assert [e["summary"] for e in remaining] == ["Retro"]
    # never a Google notification caused by a sync
    writes = calls(google)  # the stand-in records every mutating call
    assert {c["method"] for c in writes} == {"insert", "patch", "delete"}
    assert all(c["sendUpdates"] == "none" for c in writes), writes


def test_only_what_exchange_accepted_is_mirrored(
    harness: Harness, google: GoogleCalendarServer
) -> None:
    ok1, ok3 = long_id("ok1"), long_id("ok3")
    harness.see(
        create_request("One", "Two", "Three"),
        response("CreateItem", ok1, None, ok3, failed=(1,)),
    )
    harness.drain()
    assert sorted(e["summary"] for e in events(google, "alice@example.com")) == ["One", "Three"]


def test_other_users_and_mail_are_left_alone(
    harness: Harness, google: GoogleCalendarServer
) -> None:
    harness.see(
        create_request("Carol's"), response("CreateItem", long_id("c")), user="carol@example.com"
    )
    harness.see(
        create_request("Draft", folder='<t:DistinguishedFolderId Id="drafts"/>').replace(
            b"t:CalendarItem", b"t:Message"
        ),
        response("CreateItem", long_id("m")),
    )
    mail_update = update_request(long_id("unknown-mail"), subject="x").replace(
        b"t:CalendarItem", b"t:Message"
    )
    harness.see(mail_update, response("UpdateItem", long_id("unknown-mail")))
    assert harness.observed == [[], [], []]  # each one read and judged: nothing to record
    assert harness.drain() == 0
    assert harness.control(google) == ["Control"]  # alice's own create, after them, is


def test_each_user_gets_only_their_own_events(
    harness: Harness, google: GoogleCalendarServer
) -> None:
    harness.see(create_request("Alice's"), response("CreateItem", long_id("a")))
    harness.see(
        create_request("Bob's"), response("CreateItem", long_id("b")), user="bob@example.com"
    )
    harness.drain()
    assert [e["summary"] for e in events(google, "alice@example.com")] == ["Alice's"]
    assert [e["summary"] for e in events(google, "bob@example.com")] == ["Bob's"]


def test_impersonation_names_the_owner(harness: Harness, google: GoogleCalendarServer) -> None:
    body = create_request("For Bob").replace(
        b"<s:Header>",
        b"<s:Header><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>bob@example.com"
        b"</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>",
    )
    harness.see(body, response("CreateItem", long_id("imp")), user="svc@example.com")
    harness.drain()
    assert [e["summary"] for e in events(google, "bob@example.com")] == ["For Bob"]
    assert events(google, "alice@example.com") == []


#: alice's create with a document type declaration (and an entity) in it
DTD_CREATE = create_request("&a;").replace(b"?>", b'?><!DOCTYPE s:Envelope [<!ENTITY a "a">]>', 1)


@pytest.mark.parametrize(
    ("request_body", "reply", "observed", "said"),
    [
        # no calendar word in it: the observer's one-scan filter drops it unparsed
        (b"\x00garbage", b"<not xml", [[]], None),
        # parsed, and refused by the parser
        (create_request("x"), b"<s:Envelope/>", [[]], "not an EWS exchange calsync can read"),
        (DTD_CREATE, response("CreateItem", "X"), [[]], "document type declarations are not"),
        # an empty (or streamed) body is never handed to the observing thread
        (create_request("x"), b"", [], None),
    ],
    ids=["garbage", "not-soap", "dtd", "empty-response"],
)
def test_bad_traffic_passes_untouched(
    harness: Harness,
    google: GoogleCalendarServer,
    caplog: pytest.LogCaptureFixture,
    request_body: bytes,
    reply: bytes,
    observed: list[list[int]],
    said: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="calsync.proxy")
    harness.see(request_body, reply)  # asserts the flow is unchanged
    assert harness.observed == observed
    if said is not None:
        assert any(said in m for m in caplog.messages), caplog.messages
    assert harness.drain() == 0
    assert harness.control(google) == ["Control"]  # and the flow after it is mirrored


def test_faults_and_non_ews_traffic_are_not_read(
    harness: Harness, google: GoogleCalendarServer
) -> None:
    harness.see(create_request("x"), response("CreateItem", long_id("f")), status=500)
    harness.see(create_request("x"), response("CreateItem", long_id("g")), path="/owa/service.svc")
    assert harness.observed == []  # the response hook's cheap filter hands neither over
    assert harness.drain() == 0
    assert harness.control(google) == ["Control"]  # the same create, as EWS and accepted, is


def test_google_down_then_back_loses_nothing(
    harness: Harness, google: GoogleCalendarServer
) -> None:
    fault = urllib.request.Request(
        google.url + "/_admin/faults",
        data=json.dumps({"kind": "503", "count": 2}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(fault).close()
    harness.see(create_request("Resilient"), response("CreateItem", long_id("r")))
    harness.drain()  # attempt 1 and 2 fail (backoff 0 s in this config), 3 succeeds
    assert [e["summary"] for e in events(google, "alice@example.com")] == ["Resilient"]
    assert harness.addon.store.pending() == []


def test_a_busy_push_port_is_one_error_and_mirroring_goes_on(
    harness: Harness, google: GoogleCalendarServer, calsync_log: CalsyncLog
) -> None:
    """The push webhook cannot listen: calsync says so once (the error this test expects)
    and the proxy goes on mirroring; polling carries Google's changes meanwhile."""
    calsync_log.expect_error(r"push webhook cannot listen: Address already in use")
    addon = harness.addon
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        harness.tctx.options.update(
            calsync_push_port=taken.getsockname()[1], calsync_worker_processes=0
        )

        async def go() -> None:
            addon.running()  # the worker, the job and push, as in mitmdump
            await asyncio.wait_for(addon._push_task, 10)  # it ends: no webhook
            created = long_id("while-push-is-down")
            harness.see(create_request("Mirrored"), response("CreateItem", created))
            deadline = time.monotonic() + 10
            while event_id_for(created) not in {
                e["id"] for e in await asyncio.to_thread(events, google, "alice@example.com")
            }:
                assert time.monotonic() < deadline, "the worker stopped with push"
                await asyncio.sleep(0.05)
            assert addon.store.quarantined() == []
            await addon.done()

        asyncio.run(go())


def test_running_sets_mitmdumps_heap_aside_from_the_collector(harness: Harness) -> None:
    """Once the addon runs, what mitmproxy and calsync keep for the process's life is
    frozen (sync/ops/heap.py): a full collection over it stopped the event loop for
    80-130 ms now and then. With a worker process (the default) nothing else in this
    process freezes it."""
    gc.unfreeze()

    async def go() -> None:
        harness.addon.running()
        assert gc.get_freeze_count() > 0
        await harness.addon.done()

    asyncio.run(go())


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "calsync.toml"
    bad.write_text("[[users]]\nmailbox = 'nobody'\n")
    with (
        taddons.context() as tctx,
        pytest.raises(exceptions.OptionsError, match="mailbox must be an e-mail address"),
    ):
        load(tctx, bad)


def test_a_create_in_an_unknown_folder_asks_exchange_once(
    google: GoogleCalendarServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that cached the calendar's FolderId before calsync started: the worker
    asks Exchange where the item is, and remembers the calendar's id for next time."""
    from exchangelib import (
        EWSDateTime,
        EWSTimeZone,
    )
    from exchangelib.items import CalendarItem

    from emulators.ews import start_server

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", "alice-secret")
    ews = start_server(users={"alice@example.com": "alice-secret"})
    try:
        account = ews_account(ews.url)
        zone = EWSTimeZone("Europe/Berlin")
        items = []
        for subject in ("First", "Second"):
            item = CalendarItem(
                account=account,
                folder=account.calendar,
                subject=subject,
                start=EWSDateTime(2026, 3, 2, 9, tzinfo=zone),
                end=EWSDateTime(2026, 3, 2, 10, tzinfo=zone),
            )
            item.save()
            items.append(item)
        folder = f'<t:FolderId Id="{account.calendar.id}"/>'
        with taddons.context() as tctx:
            harness = Harness(
                tctx, write_config(tmp_path, google, ews_url=ews.url, users=("alice@example.com",))
            )
            harness.see(create_request("First", folder=folder), response("CreateItem", items[0].id))
            assert [e.op for e in harness.addon.store.pending()] == ["refresh"]
            harness.drain()
            assert [e["summary"] for e in events(google, "alice@example.com")] == ["First"]
            harness.see(
                create_request("Second", folder=folder), response("CreateItem", items[1].id)
            )
            assert [e.op for e in harness.addon.store.pending()] == ["upsert"]  # learned
            harness.drain()
            harness.close()
        assert sorted(e["summary"] for e in events(google, "alice@example.com")) == [
            "First",
            "Second",
        ]
    finally:
        ews.stop()


def test_series_exceptions_reach_google_as_instances(
    google: GoogleCalendarServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An occurrence edit re-reads the series: a modified occurrence becomes an instance
    override in Google, a deleted one a cancelled instance."""
    import datetime as dt

    from exchangelib import (
        EWSDateTime,
        EWSTimeZone,
    )
    from exchangelib.items import CalendarItem
    from exchangelib.recurrence import NumberedPattern, Recurrence, WeeklyPattern

    from emulators.ews import start_server

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", "alice-secret")
    ews = start_server(users={"alice@example.com": "alice-secret"})
    try:
        account = ews_account(ews.url)
        zone = EWSTimeZone("Europe/Berlin")
        master = CalendarItem(
            account=account,
            folder=account.calendar,
            subject="Team sync",
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=zone),
            end=EWSDateTime(2026, 3, 2, 9, 30, tzinfo=zone),
            recurrence=Recurrence(
                pattern=WeeklyPattern(interval=1, weekdays=[1]),
                boundary=NumberedPattern(start=dt.date(2026, 3, 2), number=5),
            ),
        )
        master.save()
        with taddons.context() as tctx:
            harness = Harness(
                tctx, write_config(tmp_path, google, ews_url=ews.url, users=("alice@example.com",))
            )
            # the series as a client created it through the proxy
            harness.see(create_request("Team sync"), response("CreateItem", master.id))
            # then, directly in Exchange: occurrence 2 moved and renamed, occurrence 3 deleted
            second = master.occurrence(index=2)
            second.refresh()
            second.subject = "Team sync (moved)"
            second.start = EWSDateTime(2026, 3, 9, 11, tzinfo=zone)
            second.end = EWSDateTime(2026, 3, 9, 11, 30, tzinfo=zone)
            second.save(update_fields=["subject", "start", "end"])
            third = master.occurrence(index=3)
            third.refresh()
            third.delete()
            # ... and one occurrence edit passes the proxy: the series is re-read
            occurrence_update = envelope(
                '<m:UpdateItem ConflictResolution="AutoResolve" SendMeetingInvitationsOrCancellations="SendToNone">'
                f'<m:ItemChanges><t:ItemChange><t:OccurrenceItemId RecurringMasterId="{master.id}" InstanceIndex="4"/>'
                '<t:Updates><t:SetItemField><t:FieldURI FieldURI="calendar:Location"/><t:CalendarItem>'
                "<t:Location>Room 9</t:Location></t:CalendarItem></t:SetItemField></t:Updates>"
                "</t:ItemChange></m:ItemChanges></m:UpdateItem>"
            )
            harness.see(occurrence_update, response("UpdateItem", long_id("occurrence-4")))
            harness.drain()
            harness.close()
        service = build(
            "calendar",
            "v3",
            credentials=Credentials_(token="alice@example.com"),
            static_discovery=True,
            client_options={"api_endpoint": google.api_endpoint},
        )
        master_id = event_id_for(master.id)
        instances = (
            service.events()
            .instances(calendarId="primary", eventId=master_id, showDeleted=True)
            .execute()["items"]
        )
        by_original = {i["originalStartTime"]["dateTime"][:10]: i for i in instances}
        assert by_original["2026-03-09"]["summary"] == "Team sync (moved)"
        assert by_original["2026-03-09"]["start"]["dateTime"].startswith("2026-03-09T11:00:00")
        assert by_original["2026-03-16"]["status"] == "cancelled"
        assert by_original["2026-03-23"]["summary"] == "Team sync"  # an untouched occurrence
    finally:
        ews.stop()


def test_the_libraries_make_no_log_record_the_termlog_would_drop() -> None:
    """mitmdump sets the root logger to DEBUG and hands each record to its event loop: the
    libraries calsync brings (exchangelib logs several DEBUG lines per EWS call) make none
    below the termlog's verbosity, and all of them at debug."""
    from mitmproxy.addons.termlog import TermLog

    root = logging.getLogger()
    names = ("exchangelib", "urllib3", "requests", "requests_ntlm", "spnego", "googleapiclient")
    names += ("google", "google_auth_httplib2", "httplib2", "oauthlib", "requests_oauthlib")
    before = (
        root.level,
        {n: logging.getLogger(n).level for n in (*names, "sqlite_utils", "psycopg")},
    )
    root.setLevel(logging.DEBUG)  # as mitmdump does (mitmproxy/tools/main.py)
    try:
        with taddons.context(TermLog()) as tctx:
            addon = tctx.script(str(ADDON)).addons[0]
            addon.configure({"calsync_config"})
            for name in ("exchangelib", "exchangelib.services.common", "urllib3", "google"):
                assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
            assert logging.getLogger("exchangelib").isEnabledFor(logging.INFO)
            tctx.options.update(termlog_verbosity="debug")
            addon.configure({"termlog_verbosity"})
            assert logging.getLogger("exchangelib.services.common").isEnabledFor(logging.DEBUG)
            root.setLevel(logging.WARNING)  # a process that does not log INFO: none louder
            tctx.options.update(termlog_verbosity="info")
            addon.configure({"termlog_verbosity"})
            assert not logging.getLogger("googleapiclient").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(before[0])
        for name, level in before[1].items():
            logging.getLogger(name).setLevel(level)
