"""The admin server over HTTP, with the stdlib's own client and cookie jar: what a visitor who
has not signed in may read (ids, counts, times; never an event's text or an attendee's
address), signing in (a password, or a reverse proxy's header), and the walls around
actions (a session, its CSRF token, the same origin)."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sync.config import AdminConfig, Config
from sync.ops import metrics
from sync.ops.admin.auth import hash_password
from sync.ops.admin.server import AdminServer
from sync.state.base import MappedItem
from sync.store import Store
from tests.sync.conftest import ALICE

PASSWORD = "correct horse battery"
TITLE = "Quarterly review with the board"
ATTENDEE = "carol@example.org"
ERROR = f"Google refused the attendee {ATTENDEE}"
ITEM, EVENT = "AAMkAGI2-item-1", "g0123456789event"


@pytest.fixture
def admin(config: Config, store: Store) -> Iterator[AdminServer]:
    metrics.reset_for_tests()
    config = replace(
        config,
        admin=AdminConfig(
            listen_port=0,
            password_hash=hash_password(PASSWORD),
            trusted_header="X-Forwarded-User",
        ),
    )
    snapshot = {"summary": TITLE, "attendees": [{"email": ATTENDEE}], "location": "Room 7"}
    store.save_mapping(MappedItem(ALICE, ITEM, EVENT, "CK1", '"e1"', "h", snapshot), now=1.0)
    held = store.enqueue(ALICE, ITEM, "update", now=1.0)
    store.retry_later(held, error=ERROR, at=2.0, quarantine=True)
    store.record_conflict(
        ALICE,
        ITEM,
        EVENT,
        "location",
        "exchange",
        "both sides changed location; exchange-wins",
        now=3.0,
    )
    metrics.RECENT.append(
        metrics.Change(
            4.0,
            ALICE,
            "exchange_feed",
            "update-google",
            ITEM,
            EVENT,
            "changed in Exchange: location",
        )
    )
    server = AdminServer(config, store).start()
    yield server
    server.stop()
    metrics.reset_for_tests()


class Browser:
    """urllib with a cookie jar: what a browser keeps between requests."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )
        self.headers = headers or {}

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        return self._open(urllib.request.Request(self.base + path, headers=self.headers))

    def post(
        self, path: str, form: dict[str, str], **headers: str
    ) -> tuple[int, dict[str, str], str]:
        body = urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            self.base + path, data=body, headers={**self.headers, **headers}, method="POST"
        )
        return self._open(request)

    def _open(self, request: urllib.request.Request) -> tuple[int, dict[str, str], str]:
        try:
            with self.opener.open(request, timeout=10) as reply:
                return reply.status, dict(reply.headers), reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def csrf(self, page: str = "/") -> str:
        _, _, html = self.get(page)
        marker = 'name="csrf" value="'
        return html[html.index(marker) + len(marker) :].split('"')[0]

    def sign_in(self) -> None:
        status, headers, _ = self.post("/login", {"password": PASSWORD})
        assert status == 303, status
        assert headers["Location"] == "/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


PAGES = ("/", f"/users/{ALICE}", f"/explain?user={ALICE}&key={ITEM}")


@pytest.mark.parametrize("page", PAGES)
def test_pages_show_no_event_text_or_address_unless_signed_in(
    admin: AdminServer, page: str
) -> None:
    visitor = Browser(admin.url)
    status, headers, html = visitor.get(page)
    assert status == 200
    assert "Read-only" in html
    assert ITEM[:10] in html  # ids are shown
    for secret in (TITLE, ATTENDEE, "Room 7", "Google refused"):
        assert secret not in html, f"{secret!r} shown to a visitor on {page}"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"

    administrator = Browser(admin.url)
    administrator.sign_in()
    _, _, signed = administrator.get(page)
    assert "Signed in as admin" in signed
    assert TITLE in signed


def test_signed_in_the_explain_page_has_the_attendees_and_the_user_page_the_error(
    admin: AdminServer,
) -> None:
    administrator = Browser(admin.url)
    administrator.sign_in()
    assert ATTENDEE in administrator.get(f"/explain?user={ALICE}&key={ITEM}")[2]
    assert ERROR in administrator.get(f"/users/{ALICE}")[2]


def test_the_session_cookie_is_httponly_and_samesite_strict(admin: AdminServer) -> None:
    status, headers, _ = Browser(admin.url).post("/login", {"password": PASSWORD})
    assert status == 303
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("calsync_admin=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_a_wrong_password_signs_nobody_in(admin: AdminServer) -> None:
    visitor = Browser(admin.url)
    status, headers, html = visitor.post("/login", {"password": PASSWORD + "!"})
    assert status == 401 and "Set-Cookie" not in headers
    assert "Wrong password." in html
    assert "Read-only" in visitor.get("/")[2]


def test_an_action_needs_a_session_its_csrf_token_and_the_same_origin(
    admin: AdminServer, store: Store
) -> None:
    (held,) = store.quarantined(ALICE)
    form = {"entry": str(held.id)}
    assert Browser(admin.url).post("/actions/discard", form)[0] == 403  # not signed in
    administrator = Browser(admin.url)
    administrator.sign_in()
    token = administrator.csrf()
    assert administrator.post("/actions/discard", form)[0] == 403  # no token
    assert administrator.post("/actions/discard", {**form, "csrf": "forged"})[0] == 403
    other = Browser(admin.url)
    other.sign_in()
    assert administrator.post("/actions/discard", {**form, "csrf": other.csrf()})[0] == 403
    cross = administrator.post(
        "/actions/discard", {**form, "csrf": token}, Origin="http://evil.example"
    )
    assert cross[0] == 403
    assert store.quarantined(ALICE) == [held]  # nothing was done
    status, _, html = administrator.post("/actions/discard", {**form, "csrf": token})
    assert status == 200 and f"Entry {held.id} discarded" in html
    assert store.quarantined(ALICE) == []


def test_signing_out_ends_the_session(admin: AdminServer) -> None:
    administrator = Browser(admin.url)
    administrator.sign_in()
    status, headers, _ = administrator.post("/logout", {"csrf": administrator.csrf()})
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
    assert "Read-only" in administrator.get("/")[2]


def test_a_reverse_proxy_signs_administrators_in_with_its_header(admin: AdminServer) -> None:
    proxied = Browser(admin.url, headers={"X-Forwarded-User": "ops@example.com"})
    assert "Signed in as ops@example.com" in proxied.get("/")[2]
    assert TITLE in proxied.get(f"/users/{ALICE}")[2]
    # the session's cookie without the header (straight to the server): read-only
    proxied.headers = {}
    assert "Read-only" in proxied.get("/")[2]
    proxied.headers = {"X-Forwarded-User": "someone-else"}
    assert "Signed in as someone-else" in proxied.get("/")[2]


def test_metrics_and_health_over_http(admin: AdminServer) -> None:
    visitor = Browser(admin.url)
    status, headers, text = visitor.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    assert "calsync_outbox_quarantined 1.0" in text
    assert ATTENDEE not in text and TITLE not in text
    status, _, body = visitor.get("/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    assert visitor.get("/healthz")[0] == 200
    assert visitor.get("/nothing-here")[0] == 404
    assert visitor.get("/users/nobody@example.com")[0] == 404


def test_an_admin_port_in_use_is_an_oserror(
    admin: AdminServer, config: Config, store: Store, tmp_path: Path
) -> None:
    port = int(admin.url.rsplit(":", 1)[1])
    taken = replace(config, admin=AdminConfig(listen_port=port))
    with pytest.raises(OSError):
        AdminServer(taken, store)
