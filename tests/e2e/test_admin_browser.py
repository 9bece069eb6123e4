"""The admin console in a real browser: Debian's headless Chromium, driven by Playwright for
Python (its own browser download never used), against the admin server of a node whose
sync job works on the stand-ins (exchangelib wrote the Exchange side; calsync's runs
carried it to Google).

Signing in, every action (pause, dry run, undo, resume, retry and discard a quarantined
entry, sign out), the charts drawn, and a visitor's pages without event text or attendee
address. Screenshots are kept under $CALSYNC_ARTIFACTS (default: .artifacts/ in the repo)
in admin-browser/. Without Chromium (scripts/test installs it as root), these tests skip,
said in one line; under CI=true they fail.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from exchangelib import Account, Attendee, CalendarItem, EWSDateTime, EWSTimeZone, Mailbox

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer
from sync.config import Config, load_config
from sync.ops import metrics, pause
from sync.ops.admin.auth import hash_password
from sync.ops.admin.server import AdminServer
from sync.sources.job import SyncJob
from sync.sources.push import UserRuns
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BOB, PASSWORDS, ews_account

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: Chromium as this machine's closed network needs it (no calls home, no sandbox as root)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOT_INSTALLED = "Chromium is not installed (as root: apt-get install chromium chromium-driver)"
ARTIFACTS = Path(os.environ.get("CALSYNC_ARTIFACTS") or ROOT / ".artifacts") / "admin-browser"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason=NOT_INSTALLED
)

ADMIN_PASSWORD = "correct horse battery"
TITLE = "Quarterly review with the board"
ATTENDEE = "carol@example.org"
ZONE = EWSTimeZone("Europe/Berlin")


@dataclass
class Site:
    url: str
    config: Config
    store: Store
    runs: UserRuns
    alice: Account
    item_id: str


def at(day: int, hour: int) -> EWSDateTime:
    return EWSDateTime(2026, 3, day, hour, 0, tzinfo=ZONE)


def create(account: Account, subject: str, day: int, **fields: Any) -> CalendarItem:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=at(day, 10),
        end=at(day, 11),
        **fields,
    )
    item.save(send_meeting_invitations="SendToNone")
    return item


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A node's store, sync job and admin server on the stand-ins: Alice's review made in
    Exchange and carried to Google by two runs (a first, full one, then an edit)."""
    workdir = tmp_path_factory.mktemp("admin-browser")
    saved = {
        k: os.environ.get(k)
        for k in ("CALSYNC_TEST_ALICE_PASSWORD", "CALSYNC_TEST_BOB_PASSWORD", "NO_PROXY")
    }
    os.environ.update(
        CALSYNC_TEST_ALICE_PASSWORD=PASSWORDS[ALICE],
        CALSYNC_TEST_BOB_PASSWORD=PASSWORDS[BOB],
        NO_PROXY="127.0.0.1,localhost",
    )
    metrics.reset_for_tests()
    ews: EwsServer = start_server(users=PASSWORDS)
    google = GoogleCalendarServer(port=0, users=(ALICE, BOB)).__enter__()
    admin_section = f'[admin]\nlisten_port = 0\npassword_hash = "{hash_password(ADMIN_PASSWORD)}"\n'
    config = load_config(
        write_config(workdir, google, ews_url=ews.url, users=(ALICE, BOB), extra=admin_section)
    )
    store = Store.open(config)
    job = SyncJob(config, store)
    runs = UserRuns(job.run_user)
    alice = ews_account(ews.url, ALICE)
    review = create(
        alice,
        "Quarterly review",
        2,
        location="Room 7",
        required_attendees=[Attendee(mailbox=Mailbox(email_address=ATTENDEE))],
    )
    alice_config = config.users[0]
    runs.run_now(alice_config)  # the first run lists everything
    review.subject = TITLE
    review.save(update_fields=["subject"])
    runs.run_now(alice_config)  # an incremental run: a latency to chart
    store.record_conflict(
        ALICE,
        str(review.id),
        None,
        "location",
        "exchange",
        "both sides changed location; exchange-wins",
        now=dt.datetime.now().timestamp(),
    )
    server = AdminServer(config, store, job=job, runs=runs).start()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield Site(server.url, config, store, runs, alice, str(review.id))
    finally:
        server.stop()
        runs.close(timeout=10)
        store.close()
        alice.protocol.close()
        google.__exit__(None, None, None)
        ews.stop()
        metrics.reset_for_tests()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(NOT_INSTALLED)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, site: Site) -> Iterator[Any]:
    """A fresh browser profile (no cookies) on the console."""
    context = chromium.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def explain(site: Site) -> str:
    return f"/explain?user={quote(ALICE)}&key={quote(site.item_id, safe='')}"


def sign_in(page: Any) -> None:
    page.goto("/")
    page.click("#sign-in")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login")
    page.wait_for_selector("#signed-in")


def user_page(page: Any) -> None:
    page.goto("/")
    page.click(f"#users a:text('{ALICE}')")
    page.wait_for_selector("h1")


# --- reading ------------------------------------------------------------------------------------


def test_a_visitor_reads_every_page_without_event_text(page: Any, site: Site) -> None:
    page.goto("/")
    assert page.is_visible("#read-only")
    assert page.locator("#users tr.user").count() == 2
    pages = {"read-only": page.content()}
    shot(page, "read-only")
    user_page(page)
    pages["user"] = page.content()
    assert page.locator("#outbox .retry").count() == 0  # no action for a visitor
    assert page.locator("#pause").count() == 0
    page.goto(explain(site))
    pages["explain"] = page.content()
    for name, html in pages.items():
        for secret in (TITLE, "Quarterly review", ATTENDEE, "Room 7"):
            assert secret not in html, f"{secret!r} shown to a visitor ({name})"
    shot(page, "read-only-explain")


def test_signed_in_an_administrator_reads_the_events(page: Any, site: Site) -> None:
    page.goto("/login")
    page.fill("#password", "not the password")
    page.click("#login")
    assert page.inner_text("#login-error") == "Wrong password."
    sign_in(page)
    user_page(page)
    # the changes the runs carried, named (an undo in another test may have put the
    # title back to what it was first)
    assert "Quarterly review" in page.inner_text("table.recent")
    page.goto(explain(site))
    assert "Quarterly review" in page.inner_text("#event")
    assert ATTENDEE in page.inner_text("#event")
    shot(page, "signed-in-explain")
    page.click("#sign-out")
    page.wait_for_selector("#read-only")


def test_the_charts_are_drawn(page: Any, site: Site) -> None:
    page.goto("/")
    throughput = page.locator("#chart-throughput")
    latency = page.locator("#chart-latency")
    assert throughput.locator("rect.bar").count() >= 1  # the runs carried changes
    assert latency.locator("circle.dot").count() >= 1
    for chart in (throughput, latency):
        box = chart.bounding_box()
        assert box is not None and box["width"] >= 700 and box["height"] >= 170
    bar = throughput.locator("rect.bar").first.bounding_box()
    assert bar is not None and bar["height"] > 0
    page.locator("figure").first.scroll_into_view_if_needed()
    shot(page, "charts")


# --- acting ---------------------------------------------------------------------------------


def test_pause_undo_and_resume(page: Any, site: Site) -> None:
    alice = site.config.users[0]
    sign_in(page)
    user_page(page)
    page.click("#pause")
    assert "paused" in page.inner_text("#result")
    page.click("#back")
    assert page.inner_text("#state") == "paused"
    assert site.runs.run_now(alice) is None  # the user's runs wait
    shot(page, "paused")
    page.click("#undo")
    assert "undone" in page.inner_text("#result")
    assert page.locator("#result-lines tr").count() >= 1
    shot(page, "undo")
    page.click("#back")
    page.click("#resume")
    assert "resumed" in page.inner_text("#result")
    page.click("#back")
    assert page.inner_text("#state") == "active"


def test_a_dry_run_of_the_next_sync(page: Any, site: Site) -> None:
    _wait_idle(site)
    create(site.alice, "Budget sync", 4)
    sign_in(page)
    user_page(page)
    page.click("#dry-run")
    assert "Dry run for" in page.inner_text("#result")
    assert "create-google" in page.inner_text("#result-lines")
    shot(page, "dry-run")


def test_retry_and_discard_a_quarantined_entry(page: Any, site: Site) -> None:
    store = site.store
    retried, discarded = (
        store.enqueue(ALICE, f"AAMk-quarantined-{name}", "update", now=time.time() - 60)
        for name in ("retried", "discarded")
    )
    for entry in (retried, discarded):
        store.retry_later(
            entry, error=f"Google refused {ATTENDEE}", at=time.time() + 60, quarantine=True
        )
    sign_in(page)
    user_page(page)
    assert ATTENDEE in page.inner_text(f"#entry-{retried}")  # signed in: the error text
    shot(page, "quarantine")
    page.click(f"#entry-{retried} .retry")
    assert f"Entry {retried} goes back to the outbox" in page.inner_text("#result")
    assert store.entry(retried).state == "pending"  # type: ignore[union-attr]
    page.click("#back")
    page.click(f"#entry-{discarded} .discard")
    assert f"Entry {discarded} discarded" in page.inner_text("#result")
    assert store.entry(discarded) is None
    store.complete(store.entry(retried), mapping=None, now=time.time())  # type: ignore[arg-type]


def test_an_action_without_the_pages_token_is_refused(page: Any, site: Site) -> None:
    sign_in(page)  # the context holds the session cookie; the post lacks the form's token
    refused = page.request.post("/actions/pause", form={"user": ALICE})
    assert refused.status == 403
    assert not pause.is_paused(ALICE)


def _wait_idle(site: Site) -> None:
    deadline = time.monotonic() + 30
    while not site.runs.idle() and time.monotonic() < deadline:
        time.sleep(0.05)
