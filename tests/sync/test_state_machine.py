"""Convergence of the two-way job, as vdirsyncer's `tests/unit/sync/test_sync.py` checks
its sync: a hypothesis state machine making random creates, edits (one field, or the same
field on both sides) and deletes on both sides through the real clients (exchangelib,
google-api-python-client) against both stand-ins, and job runs under flaky networks and
rate limits (the stand-ins' fault switches). After quiescence (faults cleared, the job run
until it has nothing to do, bounded):

- both sides equal on the managed fields, compared through `to_google` + `normalised`
  (the Google event first projected through `to_ews`, so LOSSY_FIELDS rules apply);
- no duplicates: each logical event (a token in its description) at most once per side;
- no resurrection: an event deleted on either side is gone from both;
- no lost edit the exchange-wins policy says must win.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.properties import Body
from exchangelib.protocol import FailFast
from exchangelib.version import EXCHANGE_2016, Version
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    precondition,
    rule,
)

from emulators.ews import start_server
from emulators.google.server import GoogleCalendarServer
from mapping.event import MANAGED_FIELDS, normalised, to_ews, to_google
from sync.config import load_config
from sync.sources.job import SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import BERLIN, PASSWORDS, calendar_service

ALICE = "alice@example.com"
#: how many job runs quiescence may take once the faults are cleared
QUIET_RUNS = 6
FIELDS = ("summary", "location", "time")
COMPARED = tuple(f for f in MANAGED_FIELDS if f != "iCalUID")
GOOGLE_FAULTS = ("429", "403", "500", "503", "outage")
EWS_FAULTS = ("ErrorServerBusy", "http503", "outage")


@dataclass
class Logical:
    """One event as the user sees it, wherever it lives; `token` is in its description."""

    token: str
    deleted: bool = False
    #: field -> [(side, value, uncontested)], every edit in order
    edits: dict[str, list[tuple[str, Any, bool]]] = field(default_factory=dict)
    #: field -> sides that edited it since the last clean run
    since_clean: dict[str, set[str]] = field(default_factory=dict)


def _when(slot: int) -> tuple[EWSDateTime, EWSDateTime]:
    start = EWSDateTime(2026, 5, 4, 8, tzinfo=BERLIN) + dt.timedelta(hours=slot)
    return start, start + dt.timedelta(minutes=30)


class TwoWaySync(RuleBasedStateMachine):
    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="calsync-sm-")
        tmp = Path(self._tmp.name)
        self.ews = start_server(users=PASSWORDS)
        self.google = GoogleCalendarServer(port=0, users=tuple(PASSWORDS)).start()
        path = write_config(tmp, self.google, ews_url=self.ews.url, users=(ALICE,))
        self.config = load_config(path)
        self.user = self.config.users[0]
        self.store = Store(self.config.store_path)
        self.job = SyncJob(self.config, self.store)
        google_client, _ = self.job.clients(self.user)
        google_client.backoff_s = 0.0
        self.account = Account(
            ALICE,
            config=Configuration(
                service_endpoint=self.ews.url,
                credentials=Credentials(ALICE, PASSWORDS[ALICE]),
                auth_type=BASIC,
                version=Version(build=EXCHANGE_2016),
                retry_policy=FailFast(),
            ),
            autodiscover=False,
            access_type=DELEGATE,
        )
        self.service = calendar_service(self.google.api_endpoint)
        self.counter = 0
        self.logical: dict[str, Logical] = {}

    def teardown(self) -> None:
        try:
            self._quiesce_and_check()
        finally:
            self.store.close()
            self.google.stop()
            self.ews.stop()
            self._tmp.cleanup()

    # --- the two sides, through the real clients ------------------------------------------

    def _next(self) -> int:
        self.counter += 1
        return self.counter

    def _exchange_items(self) -> dict[str, list[CalendarItem]]:
        out: dict[str, list[CalendarItem]] = {}
        for item in self.account.calendar.all():
            out.setdefault(str(item.text_body or item.body or "").strip(), []).append(item)
        return out

    def _google_events(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        page_token = None
        while True:
            page = (
                self.service.events()
                .list(calendarId="primary", pageToken=page_token, maxResults=2500)
                .execute()
            )
            for event in page.get("items", []):
                if event.get("status") != "cancelled":
                    out.setdefault(str(event.get("description", "")).strip(), []).append(event)
            page_token = page.get("nextPageToken")
            if not page_token:
                return out

    def _record(self, token: str, side: str, name: str, value: Any) -> None:
        logical = self.logical[token]
        # a Google edit must win unless Exchange also edited the field since the last clean
        # run (then exchange-wins may settle the conflict for Exchange)
        uncontested = "exchange" not in logical.since_clean.get(name, set())
        logical.edits.setdefault(name, []).append((side, value, uncontested))
        logical.since_clean.setdefault(name, set()).add(side)

    # --- rules ------------------------------------------------------------------------------

    @initialize(target=events)
    def first_event(self) -> str:
        return self.create_in_exchange()

    @rule(target=events)
    def create_in_exchange(self) -> str:
        n = self._next()
        token = f"sm-{n}"
        start, end = _when(n % 9)
        CalendarItem(
            account=self.account,
            folder=self.account.calendar,
            subject=f"Exchange {n}",
            body=Body(token),
            start=start,
            end=end,
        ).save()
        self.logical[token] = Logical(token)
        return token

    @rule(target=events)
    def create_in_google(self) -> str:
        n = self._next()
        token = f"sm-{n}"
        start, end = _when(n % 9)
        self.service.events().insert(
            calendarId="primary",
            body={
                "summary": f"Google {n}",
                "description": token,
                "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
                "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"},
            },
        ).execute()
        self.logical[token] = Logical(token)
        return token

    def _edit_exchange(self, token: str, name: str) -> bool:
        items = self._exchange_items().get(token)
        if not items:
            return False
        item = items[0]
        n = self._next()
        if name == "time":
            item.start, item.end = _when(n % 9)
            item.save(update_fields=["start", "end"])
            self._record(token, "exchange", name, n % 9)
        else:
            attribute = "subject" if name == "summary" else name
            setattr(item, attribute, f"E{n}")
            item.save(update_fields=[attribute])
            self._record(token, "exchange", name, f"E{n}")
        return True

    def _edit_google(self, token: str, name: str) -> bool:
        events = self._google_events().get(token)
        if not events:
            return False
        n = self._next()
        if name == "time":
            start, end = _when(n % 9)
            body: dict[str, Any] = {
                "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Berlin"},
                "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Berlin"},
            }
            value: Any = n % 9
        else:
            body = {name: f"G{n}"}
            value = f"G{n}"
        self.service.events().patch(
            calendarId="primary", eventId=events[0]["id"], body=body
        ).execute()
        self._record(token, "google", name, value)
        return True

    @rule(token=events, name=st.sampled_from(FIELDS))
    def edit_in_exchange(self, token: str, name: str) -> None:
        self._edit_exchange(token, name)

    @rule(token=events, name=st.sampled_from(FIELDS))
    def edit_in_google(self, token: str, name: str) -> None:
        self._edit_google(token, name)

    @rule(token=events, name=st.sampled_from(FIELDS), exchange_first=st.booleans())
    def edit_same_field_on_both_sides(self, token: str, name: str, exchange_first: bool) -> None:
        if exchange_first:
            self._edit_exchange(token, name)
            self._edit_google(token, name)
        else:
            self._edit_google(token, name)
            self._edit_exchange(token, name)

    @rule(token=events, first=st.sampled_from(FIELDS), second=st.sampled_from(FIELDS))
    def edit_different_fields(self, token: str, first: str, second: str) -> None:
        self._edit_exchange(token, first)
        self._edit_google(token, second)

    @rule(token=consumes(events))
    def delete_in_exchange(self, token: str) -> None:
        for item in self._exchange_items().get(token, []):
            item.delete()
            self.logical[token].deleted = True

    @rule(token=consumes(events))
    def delete_in_google(self, token: str) -> None:
        for event in self._google_events().get(token, []):
            self.service.events().delete(calendarId="primary", eventId=event["id"]).execute()
            self.logical[token].deleted = True

    @rule()
    def run_job(self) -> None:
        self._run()

    @rule(
        google_fault=st.none() | st.sampled_from(GOOGLE_FAULTS),
        ews_fault=st.none() | st.sampled_from(EWS_FAULTS),
        rate=st.sampled_from([0.2, 0.5]),
        seed=st.integers(0, 3),
    )
    @precondition(lambda self: bool(self.logical))
    def run_job_on_a_bad_network(
        self, google_fault: str | None, ews_fault: str | None, rate: float, seed: int
    ) -> None:
        # faults only around the job: the user's own edits are not what is under test
        if google_fault:
            _post(
                self.google.url + "/_admin/faults",
                {"kind": google_fault, "rate": rate, "seed": seed},
            )
        if ews_fault:
            _post(
                self.ews.base_url + "/_admin/faults",
                {"kind": ews_fault, "rate": rate, "seed": seed, "backOffMilliseconds": 0},
            )
        try:
            self._run()
        finally:
            _delete(self.google.url + "/_admin/faults")
            _delete(self.ews.base_url + "/_admin/faults")

    def _run(self) -> Any:
        (report,) = self.job.run([self.user], force_deletes=True)
        if not report.errors and not report.stopped:
            for logical in self.logical.values():
                logical.since_clean.clear()
        return report

    # --- quiescence and the invariants -------------------------------------------------------

    def _quiesce_and_check(self) -> None:
        reports = []
        for _ in range(QUIET_RUNS):
            report = self._run()
            reports.append(report.summary())
            if not report.errors and not report.actions and not report.stopped:
                break
        else:
            raise AssertionError(f"no quiescence after {QUIET_RUNS} runs: {reports}")
        exchange = self._exchange_items()
        google = self._google_events()
        for token, logical in self.logical.items():
            items, events = exchange.get(token, []), google.get(token, [])
            # no duplicates
            assert len(items) <= 1, f"{token}: {len(items)} copies in Exchange"
            assert len(events) <= 1, f"{token}: {len(events)} copies in Google"
            # no resurrection, and nothing half there
            if logical.deleted:
                assert not items and not events, f"{token} came back after its deletion"
                continue
            assert items and events, f"{token}: Exchange {len(items)}, Google {len(events)}"
            item, event = items[0], events[0]
            # both sides equal on the managed fields
            ours = to_google(item)
            theirs = to_google(CalendarItem(**_writable(to_ews(event))))
            for name in COMPARED:
                assert normalised(name, ours.get(name)) == normalised(name, theirs.get(name)), (
                    f"{token}: {name} differs: Exchange {ours.get(name)!r}, "
                    f"Google {event.get(name)!r}"
                )
            # no lost edit the policy says must win
            for name, edits in logical.edits.items():
                side, value, uncontested = edits[-1]
                actual = _value(item, name)
                if side == "exchange" or uncontested:
                    assert actual == value, (
                        f"{token}: the last edit of {name} ({side}: {value!r}) was lost: {actual!r}"
                    )
                else:
                    assert actual in {v for _, v, _ in edits}, f"{token}: {name} is {actual!r}"
        unknown = (set(exchange) | set(google)) - set(self.logical)
        assert not unknown, f"events nobody made: {sorted(unknown)}"


def _value(item: CalendarItem, name: str) -> Any:
    if name == "summary":
        return item.subject
    if name == "location":
        return item.location
    start, _ = _when(0)
    return int((item.start - start).total_seconds() // 3600)


def _writable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("is_cancelled", "uid")}


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def _delete(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALSYNC_TEST_ALICE_PASSWORD", PASSWORDS[ALICE])
    yield


TwoWaySync.TestCase.settings = settings(
    settings.get_profile(settings._current_profile or "default"),  # type: ignore[attr-defined]
    max_examples=15,
    stateful_step_count=12,
    deadline=None,
)
test_two_way_sync_converges = TwoWaySync.TestCase
