"""Progress bars for long work (`calsync sync`'s first full sync, `rebuild-mapping`): drawn
with rich on a terminal, and nothing at all when the output is not one, so logs and pipes
get exactly the lines they always got."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

from google.oauth2.credentials import Credentials as GoogleCredentials
from googleapiclient.discovery import build

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from tests.cli.conftest import ALICE, CALSYNC, calsync, clean_env, passwords_env, write_config


def _google_events(google: GoogleCalendarServer, count: int) -> None:
    service = build(
        "calendar",
        "v3",
        credentials=GoogleCredentials(token=ALICE),
        static_discovery=True,
        client_options={"api_endpoint": google.api_endpoint},
    )
    for n in range(count):
        service.events().insert(
            calendarId="primary",
            body={
                "summary": f"Meeting {n}",
                "start": {"dateTime": f"2026-03-0{n + 2}T09:00:00Z"},
                "end": {"dateTime": f"2026-03-0{n + 2}T10:00:00Z"},
            },
        ).execute()


def test_output_that_is_not_a_terminal_stays_clean(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = write_config(tmp_path, google_url=google.url, ews_url=ews.url, ca_file=ews.ca_path)
    _google_events(google, 3)
    synced = calsync("sync", "--once", "--config", str(config), env=passwords_env())
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == ""
    # the summary line and nothing else (the items it created come back as echoes)
    assert synced.stderr.splitlines() == [
        f"{ALICE}: 3 planned, 3 applied, 3 echoes ignored, 0 conflicts, 0 errors (ok)"
    ]
    rebuilt = calsync("rebuild-mapping", ALICE, "--config", str(config), env=passwords_env())
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stderr == ""
    assert rebuilt.stdout.splitlines() == [
        f"{ALICE}: 3 Google events, 3 tagged by calsync; mapped 0, 3 already mapped, "
        "0 without their Exchange item, 0 mapped otherwise (left alone)"
    ]
    for output in (synced.stdout, synced.stderr, rebuilt.stdout):
        assert "\x1b" not in output and "\r" not in output


def test_a_terminal_gets_a_progress_bar(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = write_config(tmp_path, google_url=google.url, ews_url=ews.url, ca_file=ews.ca_path)
    _google_events(google, 2)
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(CALSYNC), "sync", "--once", "--config", str(config)],
        env=clean_env({**passwords_env(), "TERM": "xterm-256color", "COLUMNS": "120"}),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    drawn = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0
    assert process.stdout is not None and process.stdout.read() == b""
    assert b"listing Google" in drawn and b"\x1b[" in drawn
    assert b"2 planned, 2 applied" in drawn  # the summary line is still there
