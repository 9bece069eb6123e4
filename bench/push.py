"""Push latency: a Google-side edit until it is visible through EWS, in one run.

    .venv/bin/python bench/push.py [--edits 20]

Both stand-ins on 127.0.0.1 (the Google one really POSTs its notifications to calsync's
webhook), the unmodified google-api-python-client for the edits and exchangelib for the
reads, and no polling at all: each edit reaches Exchange only through push (events.watch
-> webhook -> that user's incremental sync -> UpdateItem). The read loop itself adds up to
~10 ms plus one FindItem.

Target (issue "Two-way sync", near real time from Google): p50 <= 2 s, against the
2-minute polling interval of the best-known desktop sync tool. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

USER = "alice@example.com"
PASSWORD = "alice-secret"  # the EWS stand-in's, for this run only
POLLING_S = 120.0


def write_config(directory: Path, google_url: str, ews_url: str) -> Path:
    token = directory / "alice.json"
    token.write_text(
        json.dumps(
            {
                "token": USER,  # the stand-in's access token for a user is the address
                "refresh_token": "refresh",
                "token_uri": f"{google_url}/token",
                "client_id": "bench",
                "client_secret": "bench",
                "scopes": ["https://www.googleapis.com/auth/calendar"],
            }
        )
    )
    token.chmod(0o600)
    path = directory / "calsync.toml"
    path.write_text(
        f"""[store]
path = "{directory / "calsync.db"}"
[google]
api_endpoint = "{google_url}/calendar/v3/"
token_uri = "{google_url}/token"
[exchange]
ews_url = "{ews_url}"
[push]
listen_port = 0
[[users]]
mailbox = "{USER}"
google_token_file = "{token}"
exchange_password_env = "CALSYNC_BENCH_PASSWORD"
"""
    )
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    os.environ["CALSYNC_BENCH_PASSWORD"] = PASSWORD
    logging.basicConfig(level=logging.WARNING)

    from exchangelib import (
        BASIC,
        DELEGATE,
        Account,
        Configuration,
        Credentials,
        EWSDateTime,
        EWSTimeZone,
    )
    from exchangelib.items import CalendarItem
    from exchangelib.protocol import FailFast
    from exchangelib.version import EXCHANGE_2016, Version
    from google.oauth2.credentials import Credentials as GoogleCredentials
    from googleapiclient.discovery import build

    from emulators.ews import start_server
    from emulators.google.server import GoogleCalendarServer
    from sync.config import load_config
    from sync.sources.job import SyncJob
    from sync.sources.push import PushService
    from sync.store import Store

    ews = start_server(users={USER: PASSWORD})
    google = GoogleCalendarServer(port=0, users=(USER,)).start()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), google.url, ews.url))
        store = Store(config.store_path)
        job = SyncJob(config, store)
        user = config.users[0]
        account = Account(
            USER,
            config=Configuration(
                service_endpoint=ews.url,
                credentials=Credentials(USER, PASSWORD),
                auth_type=BASIC,
                version=Version(build=EXCHANGE_2016),
                retry_policy=FailFast(),
            ),
            autodiscover=False,
            access_type=DELEGATE,
        )
        service = build(
            "calendar",
            "v3",
            credentials=GoogleCredentials(token=USER),
            static_discovery=True,
            client_options={"api_endpoint": google.api_endpoint},
        )
        zone = EWSTimeZone("Europe/Berlin")
        CalendarItem(
            account=account,
            folder=account.calendar,
            subject="Edit -1",
            start=EWSDateTime(2026, 3, 2, 9, tzinfo=zone),
            end=EWSDateTime(2026, 3, 2, 10, tzinfo=zone),
        ).save()
        job.run_user(user)  # mirrored to Google: the event the edits change
        (event,) = service.events().list(calendarId="primary").execute()["items"]

        push = PushService(config, store, job.run_user)
        push.start()
        latencies: list[float] = []
        try:
            for n in range(args.edits):
                subject = f"Edit {n}"
                started = time.perf_counter()
                service.events().patch(
                    calendarId="primary", eventId=event["id"], body={"summary": subject}
                ).execute()
                deadline = started + 30
                while time.perf_counter() < deadline:
                    if any(i.subject == subject for i in account.calendar.all().only("subject")):
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(0.01)
                else:
                    print(f"edit {n}: not in Exchange after 30 s", file=sys.stderr)
        finally:
            push.stop()
            store.close()
            google.stop()
            ews.stop()

    if not latencies:
        print("no edit reached Exchange")
        return 1
    p50 = statistics.median(latencies)
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    print(f"push latency, Google edit -> visible through EWS, {len(latencies)} edits:")
    print(f"  p50 {p50 * 1000:7.0f} ms   (target <= 2000 ms)")
    print(f"  p90 {p90 * 1000:7.0f} ms")
    print(f"  max {ordered[-1] * 1000:7.0f} ms")
    print(
        f"  vs polling every {POLLING_S:.0f} s (mean wait {POLLING_S / 2:.0f} s): "
        f"{POLLING_S / 2 / p50:,.0f}x sooner at p50"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
