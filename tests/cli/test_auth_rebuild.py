"""`calsync auth google` (the headless paste flow) and `calsync rebuild-mapping`, through
the real entry point.

The Google stand-in's /token answers only the refresh_token grant, so the authorization
code is traded at a small OAuth token endpoint served here (RFC 6749 section 4.1.3)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials, EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.protocol import BaseProtocol, FailFast
from exchangelib.version import EXCHANGE_2016, Version
from google.oauth2.credentials import Credentials as GoogleCredentials
from googleapiclient.discovery import build

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.store import Store
from tests.cli.conftest import ALICE, PASSWORDS, calsync, passwords_env, write_config

GOOD_CODE = "4/0-good-code"
SCOPE = "https://www.googleapis.com/auth/calendar"
GRANTED = {"access_token": "ya29.granted-at-7c1e", "refresh_token": "1//refresh-9d4f"}


class _TokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        form = {
            k: v[-1]
            for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()
        }
        ok = form.get("grant_type") == "authorization_code" and form.get("code") == GOOD_CODE
        # the client authenticates in the body or with HTTP Basic (RFC 6749 section 2.3.1)
        basic = self.headers.get("Authorization", "").removeprefix("Basic ")
        client = form.get("client_id") or base64.b64decode(basic or "Og==").decode().split(":")[0]
        body = (
            {**GRANTED, "expires_in": 3599, "token_type": "Bearer", "scope": SCOPE}
            if ok and client == "calsync-cli.apps.googleusercontent.com"
            else {"error": "invalid_grant", "error_description": "Bad Request"}
        )
        data = json.dumps(body).encode()
        self.send_response(200 if "access_token" in body else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def token_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def _auth_setup(tmp_path: Path, token_uri: str) -> tuple[Path, Path]:
    config = tmp_path / "calsync.toml"
    config.write_text(
        f'[google]\ntoken_uri = "{token_uri}"\n[[users]]\nmailbox = "{ALICE}"\n'
        f'google_token_file = "tokens/{ALICE}.json"\n'
    )
    secrets = tmp_path / "client_secret.json"
    secrets.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "calsync-cli.apps.googleusercontent.com",
                    "client_secret": "GOCSPX-client-secret-31aa",
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": "https://oauth2.googleapis.com/token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    return config, secrets


def _auth(config: Path, secrets: Path, pasted: str) -> Any:
    import subprocess

    from tests.cli.conftest import CALSYNC, ROOT, clean_env

    return subprocess.run(
        [str(CALSYNC), "auth", "google", ALICE, "--config", str(config),
         "--client-secrets", str(secrets), "--no-browser"],
        input=pasted + "\n", capture_output=True, text=True, timeout=60,
        env=clean_env({"DISPLAY": ""}), cwd=ROOT,
    )


def test_headless_auth_stores_the_token_0600(tmp_path: Path, token_endpoint: str) -> None:
    config, secrets = _auth_setup(tmp_path, token_endpoint)
    pasted = f"http://localhost:8085/?code={GOOD_CODE}&scope=https://www.googleapis.com/auth/calendar"
    done = _auth(config, secrets, pasted)
    assert done.returncode == 0, done.stderr
    assert "https://accounts.google.com/o/oauth2/auth?" in done.stderr
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A8085%2F" in done.stderr
    token = tmp_path / "tokens" / f"{ALICE}.json"
    assert token.stat().st_mode & 0o777 == 0o600
    saved = json.loads(token.read_text())
    assert saved["refresh_token"] == GRANTED["refresh_token"]
    assert saved["token_uri"] == token_endpoint  # [google] token_uri wins
    for secret in (*GRANTED.values(), "GOCSPX-client-secret-31aa"):
        assert secret not in done.stdout + done.stderr


def test_headless_auth_refused_or_misconfigured(tmp_path: Path, token_endpoint: str) -> None:
    config, secrets = _auth_setup(tmp_path, token_endpoint)
    refused = _auth(config, secrets, "4/0-stale-code")
    assert refused.returncode == 1 and "did not grant a token" in refused.stderr
    assert not (tmp_path / "tokens" / f"{ALICE}.json").exists()
    other_state = _auth(config, secrets, f"http://localhost:8085/?code={GOOD_CODE}&state=xyz")
    assert other_state.returncode == 1 and "state differs" in other_state.stderr
    missing = _auth(config, tmp_path / "nope.json", GOOD_CODE)
    assert missing.returncode == 2 and "cannot read the OAuth client file" in missing.stderr
    unknown = calsync("auth", "google", "eve@example.com", "--config", str(config))
    assert unknown.returncode == 2 and "no user 'eve@example.com'" in unknown.stderr


def test_rebuild_mapping_maps_tagged_events_without_duplicates(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, google_url=google.url, ews_url=ews.url, ca_file=ews.ca_path)
    assert ews.ca_path is not None
    ca = str(ews.ca_path)

    import requests.adapters

    class TrustStandIn(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["verify"], kwargs["proxies"] = ca, {}
            return super().send(request, **kwargs)

    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", TrustStandIn)
    account = Account(
        ALICE,
        config=Configuration(
            service_endpoint=ews.url, credentials=Credentials(ALICE, PASSWORDS[ALICE]),
            auth_type=BASIC, version=Version(build=EXCHANGE_2016), retry_policy=FailFast(),
        ),
        autodiscover=False, access_type=DELEGATE,
    )
    service = build(
        "calendar", "v3", credentials=GoogleCredentials(token=ALICE), static_discovery=True,
        client_options={"api_endpoint": google.api_endpoint},
    )
    start = EWSDateTime.from_datetime(dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC))
    ids = []
    for subject in ("Kept", "Gone"):
        item = CalendarItem(account=account, folder=account.calendar, subject=subject,
                            start=start, end=start + dt.timedelta(hours=1))
        item.save()
        ids.append(item.id)
        service.events().insert(calendarId="primary", body={
            "summary": subject,
            "start": {"dateTime": "2026-03-02T09:00:00Z"},
            "end": {"dateTime": "2026-03-02T10:00:00Z"},
            "extendedProperties": {"private": {
                "calsync_ews_item_id": item.id, "calsync_mailbox": ALICE}},
        }).execute()
        if subject == "Gone":
            item.delete()
    service.events().insert(calendarId="primary", body={
        "summary": "Google only", "start": {"dateTime": "2026-03-03T09:00:00Z"},
        "end": {"dateTime": "2026-03-03T10:00:00Z"}}).execute()

    first = calsync("rebuild-mapping", ALICE, "--config", str(config), env=passwords_env())
    assert first.returncode == 0, first.stderr
    assert "3 Google events, 2 tagged by calsync; mapped 1, 0 already mapped, 1 without" in first.stdout
    assert "Gone" in first.stdout
    again = calsync("rebuild-mapping", ALICE, "--config", str(config), env=passwords_env())
    assert "mapped 0, 1 already mapped" in again.stdout
    store = Store(load_config(config).store_path)
    try:
        assert [m.ews_item_id for m in store.mapped_items(ALICE)] == [ids[0]]
    finally:
        store.close()
    events = service.events().list(calendarId="primary").execute()["items"]
    assert len(events) == 3  # nothing created anywhere
