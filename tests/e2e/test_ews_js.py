"""ews-javascript-api, unmodified (npm; a port of Microsoft's EWS Managed API, so the
request shapes of Microsoft's own client library), as the mail client: `ews_js/client.js`
goes through a real `mitmdump -s addon/calsync.py` as its HTTPS proxy (the library's own
XhrApi proxy support; Node trusts the mitmproxy CA through NODE_EXTRA_CA_CERTS) to the EWS
stand-in; every step is checked in the Google stand-in.

One Node process serves the module: each test sends it the steps it needs, one JSON line
each, and reads one JSON line back with the ids. The Managed API edits and deletes an
occurrence by its own ItemId, after binding to it with an OccurrenceItemId (GetItem).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORD, Chain
from tests.e2e.processes import clean_env
from tests.e2e.steps import (
    ALICE,
    Google,
    berlin,
    client_missing,
    expect,
    weekly,
)

CLIENT = Path(__file__).parent / "ews_js" / "client.js"
LIBRARY = CLIENT.parent / "node_modules" / "ews-javascript-api"
pytestmark = pytest.mark.usefixtures("ews_operations")

BOB = "bob@example.com"
CAROL = "carol@example.org"


def missing() -> str | None:
    """Why the client can't run here (None: it can)."""
    if shutil.which("node") is None:
        return "ews-javascript-api needs node, which is not on PATH"
    if not LIBRARY.exists():
        return f"{LIBRARY} missing: scripts/test installs it (npm ci in {CLIENT.parent})"
    return None


MISSING = client_missing(missing())


class ManagedApi:
    """The Node process running `client.js`; `do(step, ...)` sends one step, returns its answer."""

    def __init__(self, chain: Chain) -> None:
        self.log_path = chain.workdir / "ews-js.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["node", str(CLIENT)],
                cwd=CLIENT.parent,
                env=clean_env(
                    {
                        "EWS_URL": chain.ews.url,
                        "EWS_USER": ALICE,
                        "EWS_PASSWORD": PASSWORD,
                        "EWS_PROXY": chain.proxy.proxy_url,
                        "NODE_EXTRA_CA_CERTS": str(chain.proxy.ca_path),
                        "TZ": "Europe/Berlin",
                    }
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._buffer = b""

    def do(self, step: str, timeout: float = 30.0, **arguments: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"step": step, **arguments}).encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        # a selector, not select(): by the end of a whole run this process holds over a
        # thousand descriptors, and select() refuses one numbered past 1023
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                ready = selector.select(max(left, 0))
                chunk = os.read(self.process.stdout.fileno(), 65536) if ready else b""
                if not chunk:
                    raise RuntimeError(f"client.js gave no answer to {step}:\n{self.log()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ok(self, step: str, **arguments: Any) -> dict[str, Any]:
        """`do`, asserting the library reported success."""
        answer = self.do(step, **arguments)
        assert answer["ok"], answer
        return answer

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def client(chain: Chain) -> Iterator[ManagedApi]:
    if MISSING is not None:
        pytest.fail(MISSING)
    process = ManagedApi(chain)
    try:
        yield process
    finally:
        process.stop()


def test_an_answer_is_read_past_descriptor_1023(chain: Chain) -> None:
    """By the end of a whole run the suite's process holds over a thousand descriptors
    (1,053 in a CI rehearsal), and a client started then has its pipes numbered past 1023,
    which select() refuses: every step failed ("filedescriptor out of range in select()").
    Here the client's pipes come after a thousand others."""
    if MISSING is not None:
        pytest.fail(MISSING)
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.extend(os.pipe())
        api = ManagedApi(chain)
        try:
            answer = api.do("get", id="AAMkAGNhbHN5bmMtbm8tc3VjaC1pdGVt")
        finally:
            api.stop()
        assert answer["ok"] is False  # an answer, read: no such item
    finally:
        for descriptor in held:
            os.close(descriptor)


def iso(value: dt.datetime | dt.date) -> str:
    return value.isoformat()


SERIES = {"days": ["Monday"], "start": "2026-03-02", "count": 5}


def series(client: ManagedApi, in_google: Google, subject: str, first: dt.datetime) -> str:
    """A weekly series of five Mondays from `first`, checked in Google; its ItemId."""
    created = client.ok(
        "create",
        subject=subject,
        start=iso(first),
        end=iso(first + dt.timedelta(minutes=30)),
        weekly=SERIES,
    )
    assert in_google.wait_starts(subject, weekly(first, 5)) == weekly(first, 5)
    return str(created["id"])


# --- the steps -------------------------------------------------------------------------------


def test_create(client: ManagedApi, in_google: Google) -> None:
    client.ok(
        "create", subject="Managed API create", start=iso(berlin(2, 9)), end=iso(berlin(2, 9, 30))
    )

    want = expect("Managed API create", berlin(2, 9), berlin(2, 9, 30))
    assert in_google.wait_shape(want) == [want]


def test_update_subject_and_time(client: ManagedApi, in_google: Google) -> None:
    created = client.ok(
        "create", subject="Managed API before", start=iso(berlin(3, 9)), end=iso(berlin(3, 10))
    )
    before = expect("Managed API before", berlin(3, 9), berlin(3, 10))
    assert in_google.wait_shape(before) == [before]

    client.ok(
        "update",
        id=created["id"],
        subject="Managed API after",
        start=iso(berlin(3, 14)),
        end=iso(berlin(3, 15, 30)),
    )

    after = expect("Managed API after", berlin(3, 14), berlin(3, 15, 30))
    assert in_google.wait_shape(after) == [after]
    assert in_google.titled("Managed API before") == []


def test_all_day(client: ManagedApi, in_google: Google) -> None:
    # The Managed API sends an all-day event as local midnight to midnight, IsAllDayEvent true.
    client.ok(
        "create",
        subject="Managed API all day",
        allDay=True,
        start=iso(berlin(5, 0)),
        end=iso(berlin(6, 0)),
    )

    want = expect("Managed API all day", dt.date(2026, 3, 5), dt.date(2026, 3, 6))
    assert in_google.wait_shape(want) == [want]


def test_weekly_series(client: ManagedApi, in_google: Google) -> None:
    series(client, in_google, "Managed API weekly", berlin(2, 11))

    want = expect(
        "Managed API weekly",
        berlin(2, 11),
        berlin(2, 11, 30),
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=5;BYDAY=MO"],
    )
    assert in_google.wait_shape(want) == [want]


def test_moved_occurrence(client: ManagedApi, in_google: Google) -> None:
    master = series(client, in_google, "Managed API moved", berlin(2, 13))

    third = client.ok("occurrence", id=master, index=3)  # GetItem by OccurrenceItemId
    client.ok("update", id=third["id"], start=iso(berlin(17, 15)), end=iso(berlin(17, 15, 30)))

    want = weekly(berlin(2, 13), 5)
    want[2] = (berlin(16, 13), berlin(17, 15))
    assert in_google.wait_starts("Managed API moved", want) == want


def test_deleted_occurrence(client: ManagedApi, in_google: Google) -> None:
    master = series(client, in_google, "Managed API deleted occurrence", berlin(2, 15))

    fourth = client.ok("occurrence", id=master, index=4)
    client.ok("delete", id=fourth["id"], mode="HardDelete")

    want = [s for s in weekly(berlin(2, 15), 5) if s[0] != berlin(23, 15)]
    assert in_google.wait_starts("Managed API deleted occurrence", want) == want


def test_attendees(client: ManagedApi, in_google: Google) -> None:
    client.ok(
        "create",
        subject="Managed API meeting",
        start=iso(berlin(4, 10)),
        end=iso(berlin(4, 11)),
        required=[BOB],
        optional=[CAROL],
        send="SendToAllAndSaveCopy",
    )

    want = expect("Managed API meeting", berlin(4, 10), berlin(4, 11), attendees=[BOB, CAROL])
    assert in_google.wait_shape(want) == [want]


@pytest.mark.parametrize("mode", ["MoveToDeletedItems", "HardDelete"])
def test_delete(client: ManagedApi, in_google: Google, mode: str) -> None:
    subject = f"Managed API delete {mode}"
    created = client.ok("create", subject=subject, start=iso(berlin(6, 9)), end=iso(berlin(6, 10)))
    assert len(in_google.wait(subject, bool, "the event to arrive")) == 1

    client.ok("delete", id=created["id"], mode=mode)

    assert in_google.wait_gone(subject) == []
