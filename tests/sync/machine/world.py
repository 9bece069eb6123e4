"""One state-machine example's world: both stand-ins, calsync's config and state, the
user's own clients on each side, the proxy's addon (loaded when the example first uses
it), and the ways calsync is run: the two-way job in this process, the outbox worker
draining what the addon saw, `calsync sync` as a process that can be killed, and
`calsync undo`.

The stand-ins and the job share one clock, real time plus an offset the machine moves on
before each edit a user makes (so that "newest" is never a tie within one of Exchange's
whole seconds) and while it waits for quiescence (so that any back-off has passed).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from exchangelib import Account
from exchangelib.items import CalendarItem

from emulators.ews import start_server
from emulators.google.server import GoogleCalendarServer
from sync.backends.base import register_google_event_field
from sync.config import load_config
from sync.sources.job import Report, SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, PASSWORDS, calendar_service, ews_account
from tests.sync.machine import soap

#: the environment calsync finds Alice's EWS password in (tests/addon/conftest.write_config)
PASSWORD_ENV = "CALSYNC_TEST_ALICE_PASSWORD"
#: how long a killed `calsync sync` may take to reach the held write (it imports first)
KILL_WAIT_S = 60.0


class Clock:
    """Real time plus an offset that only grows."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset)

    def time(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class World:
    def __init__(self, policy: str = "exchange-wins") -> None:
        # exchangelib keeps extended-property registrations on its CalendarItem class,
        # which the in-process EWS stand-in shares: registered once items exist, the
        # stand-in's stored ones lack the attribute (see the report of issue 12's H4)
        register_google_event_field()
        self._tmp = tempfile.TemporaryDirectory(prefix="calsync-sm-")
        self.dir = Path(self._tmp.name)
        self.clock = Clock()
        self.ews = start_server(users={ALICE: PASSWORDS[ALICE]}, clock=self.clock.now)
        self.google = GoogleCalendarServer(port=0, users=(ALICE,), clock=self.clock.now).start()
        self.policy = policy
        self.config_path = self._write_config()
        self.store: Store | None = None
        self._job: SyncJob | None = None
        self._harness: Any = None
        self._addon_context: Any = None
        self.account: Account = ews_account(self.ews.url)
        self.service = calendar_service(self.google.api_endpoint)

    def _write_config(self) -> Path:
        return write_config(
            self.dir,
            self.google,
            ews_url=self.ews.url,
            users=(ALICE,),
            extra=f'[sync]\npolicy = "{self.policy}"\n',
        )

    def set_policy(self, policy: str) -> None:
        """Before anything of calsync's has run."""
        assert self._job is None and self._harness is None, "the policy is chosen first"
        self.policy = policy
        self._write_config()

    @property
    def job(self) -> SyncJob:
        if self._job is None:
            config = load_config(self.config_path)
            self.store = Store(config.store_path)
            self._job = SyncJob(config, self.store, clock=self.clock.time)
            google_client, _ = self._job.clients(config.users[0])
            google_client.backoff_s = 0.0
            google_client.sleep = lambda seconds: None
        return self._job

    def close(self) -> None:
        try:
            if self._harness is not None:
                asyncio.run(self._harness.addon.done())
                self._addon_context.__exit__(None, None, None)
            if self.store is not None:
                self.store.close()
        finally:
            self.google.stop()
            self.ews.stop()
            self._tmp.cleanup()

    # --- calsync, run the ways it runs -------------------------------------------------------

    def run(self) -> Report:
        job = self.job
        (report,) = job.run([job.config.users[0]], force_deletes=True)
        return report

    @property
    def verify_interval_s(self) -> float:
        return float(self.job.config.sync.verify_interval_s)

    def google_listed(self) -> bool:
        """Whether the job has listed Google once (its sync token is stored)."""
        if self.store is None:
            return False
        return bool(self.store.sync_state(ALICE).get("google_sync_token"))

    def last_run_id(self) -> int | None:
        self.job  # noqa: B018  # the store opens with the job
        assert self.store is not None
        run = self.store.last_run(ALICE)
        return None if run is None else run.id

    @property
    def has_addon(self) -> bool:
        return self._harness is not None

    @property
    def harness(self) -> Any:
        """The addon as mitmdump loads it (tests/addon/test_calsync.py's Harness), its
        outbox worker writing through the same store as the job."""
        if self._harness is None:
            from mitmproxy.test import taddons

            from tests.addon.test_calsync import Harness

            self.job  # noqa: B018  # one store, opened by the job first
            self._addon_context = taddons.context()
            self._harness = Harness(self._addon_context.__enter__(), self.config_path)
        return self._harness

    def through_proxy(self, request: bytes) -> soap.Exchange:
        """A client's request, sent to Exchange through the proxy: the addon sees the
        request and Exchange's answer (its worker mirrors it when the outbox drains)."""
        exchange = soap.post(self.ews.url, ALICE, PASSWORDS[ALICE], request)
        self.harness.see(exchange.request, exchange.answer, user=ALICE, status=exchange.status)
        return exchange

    def drain(self) -> int:
        return int(self.harness.drain()) if self._harness is not None else 0

    def outbox(self) -> tuple[int, int]:
        """How many outbox entries are pending, and how many are quarantined."""
        if self.store is None:
            return 0, 0
        return len(self.store.pending(ALICE)), len(self.store.quarantined(ALICE))

    def killed_sync(self, side: str, seed: int) -> bool:
        """`calsync sync` in its own process, SIGKILLed while the answer to one of its
        writes to `side` ("google" or "ews") is held: the write is done, its record is
        not. False when the run wrote nothing there the fault picked (it then ended
        by itself)."""
        calsync = Path(sys.executable).with_name("calsync")
        env = {
            **os.environ,
            "NO_PROXY": "127.0.0.1,localhost",
            PASSWORD_ENV: PASSWORDS[ALICE],
        }
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            env.pop(name, None)
        base = self.google.url if side == "google" else self.ews.base_url
        fault = {"kind": "heldAnswer", "rate": 0.5, "seed": seed, "count": 1}
        _post(base + "/_admin/faults", fault)
        killed = False
        process = subprocess.Popen(
            [str(calsync), "sync", "--config", str(self.config_path), "--force-deletes"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + KILL_WAIT_S
            while process.poll() is None and time.monotonic() < deadline:
                if not _get(base + "/_admin/faults"):  # its one use is taken: a write is held
                    process.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.005)
            else:
                if process.poll() is None:
                    process.kill()
                    raise AssertionError("calsync sync neither ended nor wrote in time")
            process.wait(10)
        finally:
            clear_faults(self)
        return killed

    def undo(self) -> tuple[int, str]:
        """`calsync undo` for the user: exit status and what it printed."""
        from sync.cli import main

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["undo", "--config", str(self.config_path), ALICE])
        return status, out.getvalue()

    # --- the user's own view of both sides -------------------------------------------------

    def exchange_items(self) -> dict[str, list[CalendarItem]]:
        """Calendar items (singles and series masters) by the token in their body."""
        out: dict[str, list[CalendarItem]] = {}
        for item in self.account.calendar.all():
            out.setdefault(str(item.text_body or item.body or "").strip(), []).append(item)
        return out

    def google_events(self) -> dict[str, list[dict[str, Any]]]:
        """Live events (singles and series; not a series' instance overrides) by the token
        in their description."""
        out: dict[str, list[dict[str, Any]]] = {}
        page_token = None
        while True:
            page = (
                self.service.events()
                .list(calendarId="primary", pageToken=page_token, maxResults=2500)
                .execute()
            )
            for event in page.get("items", []):
                if event.get("status") != "cancelled" and not event.get("recurringEventId"):
                    out.setdefault(str(event.get("description", "")).strip(), []).append(event)
            page_token = page.get("nextPageToken")
            if not page_token:
                return out


@contextlib.contextmanager
def faults(world: World, google: dict[str, Any] | None, ews: dict[str, Any] | None) -> Iterator[None]:
    """The stand-ins' fault switches on around what calsync does, never around the
    user's own edits."""
    if google:
        _post(world.google.url + "/_admin/faults", google)
    if ews:
        _post(world.ews.base_url + "/_admin/faults", ews)
    try:
        yield
    finally:
        clear_faults(world)


def clear_faults(world: World) -> None:
    _delete(world.google.url + "/_admin/faults")
    _delete(world.ews.base_url + "/_admin/faults")


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url) as answer:
        return json.load(answer)


def _delete(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()
