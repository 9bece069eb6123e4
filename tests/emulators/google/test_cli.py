"""`calsync emulate google` / `python -m emulators.google` as a subprocess on port 0."""

from __future__ import annotations

import re
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from sync.cli import build_parser
from tests.emulators.google.conftest import ALICE, timed_event

REPO = Path(__file__).resolve().parents[3]


@contextmanager
def running(*command: str) -> Iterator[str]:
    """Start the stand-in, wait for the line announcing its URL, stop it afterwards."""
    process = subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        # Generous: only a start-up that never happens reaches it.
        assert selector.select(timeout=30), "the stand-in printed nothing"
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        assert int(match.group(1)) != 0  # port 0 became the real bound port
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(url: str, email: str) -> Any:
    return build("calendar", "v3", static_discovery=True, credentials=Credentials(token=email),
                 client_options={"api_endpoint": f"{url}/calendar/v3/"})


def test_module_entry_point_serves_on_an_ephemeral_port() -> None:
    with running("-m", "emulators.google", "--port", "0", "--user", ALICE) as url:
        client = _client(url, ALICE)
        created = client.events().insert(calendarId="primary", body=timed_event()).execute()
        assert client.events().get(calendarId="primary",
                                   eventId=created["id"]).execute()["id"] == created["id"]


def test_calsync_emulate_google_is_the_same_command() -> None:
    with running("-m", "sync.cli", "emulate", "google", "--port", "0", "--user", ALICE) as url:
        items = _client(url, ALICE).calendarList().list().execute()["items"]
        assert [i["id"] for i in items] == [ALICE]


def test_subcommand_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(["emulate", "google", "--port", "0", "--user", "a@x.example",
                                      "--user", "b@x.example", "--db", "state.db"])
    assert (args.port, args.user, args.db) == (0, ["a@x.example", "b@x.example"], "state.db")
    assert callable(args.run)
