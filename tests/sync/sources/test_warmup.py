"""The writer warmed up at start (sync/sources/warmup.py): against the Google stand-in
through the unmodified client, in this process and in a worker process as mitmdump runs it."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.backends.clients import Clients
from sync.config import Config, load_config
from sync.sources.outbox import Mirror
from sync.sources.warmup import warm_clients
from sync.store import Store
from tests.addon.conftest import create_request, long_id, write_config
from tests.sync.conftest import ALICE, BOB

REFRESHED = "ya29.stand-in."  # how the stand-in's refreshed access tokens begin


def token_of(config: Config, mailbox: str) -> str:
    user = config.user_named(mailbox)
    assert user is not None and user.google_token_file is not None
    return str(json.loads(Path(user.google_token_file).read_text())["token"])


def fault(google: GoogleCalendarServer, spec: dict[str, object] | None) -> None:
    """Inject one fault (None: clear them all) through the stand-in's admin endpoint."""
    request = urllib.request.Request(
        google.url + "/_admin/faults",
        data=json.dumps(spec).encode() if spec else None,
        headers={"content-type": "application/json"},
        method="POST" if spec else "DELETE",
    )
    urllib.request.urlopen(request).close()


def test_each_mirrored_users_client_is_made_and_its_expired_token_refreshed(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    # Bob only syncs Google to Exchange: the worker never writes his Google calendar
    config = load_config(
        write_config(
            tmp_path, google, users=(ALICE, BOB), extra='direction = "google-to-exchange"\n'
        )
    )
    for mailbox in (ALICE, BOB):
        google.state.expire_access_tokens(mailbox)
    assert warm_clients(config, Clients(config)) == 1
    assert token_of(config, ALICE).startswith(REFRESHED)  # refreshed, and saved for the next start
    assert token_of(config, BOB) == BOB


def test_google_down_is_one_line_and_no_wait_per_user(
    tmp_path: Path, google: GoogleCalendarServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write_config(tmp_path, google, users=(ALICE, BOB)))
    fault(google, {"kind": "outage"})
    try:
        with caplog.at_level(logging.INFO, logger="calsync.mirror"):
            assert warm_clients(config, Clients(config)) == 0
    finally:
        fault(google, None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # the first user found Google unreachable: the second was not tried
    assert warnings == [
        "Google not warmed up for 1 user(s) (unreachable); their first change connects as "
        "it is mirrored"
    ]
    assert warm_clients(config, Clients(config)) == 2  # Google back: both warm


def test_a_refused_user_is_one_line_and_the_others_warm(
    tmp_path: Path, google: GoogleCalendarServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write_config(tmp_path, google, users=(ALICE, BOB)))
    user = config.user_named(ALICE)
    assert user is not None and user.google_token_file is not None
    Path(user.google_token_file).unlink()  # Alice's credentials are gone
    with caplog.at_level(logging.WARNING, logger="calsync.mirror"):
        assert warm_clients(config, Clients(config)) == 1  # Bob
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("Google not warmed up for 1 user(s) (CalsyncError)")


def test_the_heap_is_frozen_before_the_process_says_it_is_warm(
    tmp_path: Path, google: GoogleCalendarServer, caplog: pytest.LogCaptureFixture
) -> None:
    """bench/proxy.py and the demo send their first change once a worker says it is warm:
    the freeze's collection (about 0.1 s, the process stopped) is over by then."""
    config = load_config(write_config(tmp_path, google, users=(ALICE,)))
    frozen_when_said: list[int] = []

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("warm in"):
                frozen_when_said.append(gc.get_freeze_count())

    said = Said()
    logger = logging.getLogger("calsync.mirror")
    gc.unfreeze()
    with caplog.at_level(logging.INFO, logger="calsync.mirror"):
        logger.addHandler(said)
        try:
            assert warm_clients(config, Clients(config), freeze=True) == 1
        finally:
            logger.removeHandler(said)
    assert len(frozen_when_said) == 1 and frozen_when_said[0] > 0


def test_the_worker_process_is_spawned_and_warm_before_any_change(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    path = write_config(tmp_path, google, users=(ALICE,))
    config = load_config(path)
    google.state.expire_access_tokens(ALICE)
    store = Store(config.store_path)
    mirror = Mirror(config, store)
    try:
        mirror.use_processes(str(path))
        deadline = time.monotonic() + 60
        while not token_of(config, ALICE).startswith(REFRESHED):
            assert time.monotonic() < deadline, "the worker process never warmed up"
            time.sleep(0.05)
    finally:
        mirror.close()
        store.close()


#: A worker process as mitmdump starts one (`_init_worker`), then its first change: every
#: module that change needs was imported while it warmed up, and its heap then frozen
#: (sync/ops/heap.py).
_FIRST_CHANGE = """
import gc, json, sys, threading
from sync.core.notice import RequestHint
from sync.sources import outbox

config_path, entry_id, request_path = sys.argv[1:]
outbox._init_worker(config_path)
for thread in threading.enumerate():
    if thread.name == "calsync-warm-up":
        thread.join(60)
frozen = gc.get_freeze_count()  # warm: its heap set aside from the collector
before = set(sys.modules)
with open(request_path, "rb") as request:
    hint = RequestHint(request.read(), 0, "W. Europe Standard Time")
done = outbox.process_in_worker(int(entry_id), hint)
imported = sorted(set(sys.modules) - before)
print(json.dumps({"done": done is not None, "imported": imported, "frozen": frozen}))
"""


def test_the_first_change_after_the_warm_up_imports_nothing(
    tmp_path: Path, google: GoogleCalendarServer
) -> None:
    path = write_config(tmp_path, google, users=(ALICE,))
    config = load_config(path)
    item = long_id("first")
    store = Store(config.store_path)
    try:
        entry = store.enqueue(ALICE, item, "upsert", now=0.0, change_key="DwAAAB" + item[-12:])
    finally:
        store.close()
    request = tmp_path / "create.xml"
    request.write_bytes(create_request("First after start"))
    ran = subprocess.run(
        [sys.executable, "-c", _FIRST_CHANGE, str(path), str(entry), str(request)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    outcome = json.loads(ran.stdout.splitlines()[-1])
    assert outcome["done"], ran.stderr[-2000:]
    assert outcome["imported"] == []
    assert outcome["frozen"] > 0
    assert event_id_for(item) in google.state.calendars[ALICE].events


# --- the profile bench/cpu.py asks for ---------------------------------------------------------

_PROFILED = """
import os, signal, sys
from sync.sources.warmup import profile_if_asked

def spend():
    return sum(i * i for i in range(200_000))

profile_if_asked()
spend()
if signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL:  # (the default would end it)
    os.kill(os.getpid(), signal.SIGUSR1)
print(os.getpid())
"""


@pytest.mark.parametrize("asked", [True, False])
def test_the_worker_profiles_its_cpu_when_asked(tmp_path: Path, asked: bool) -> None:
    """With CALSYNC_PROFILE_DIR, the thread that warms up is profiled (its own CPU clock)
    and the profile written on SIGUSR1; without it, nothing is."""
    import os
    import pstats

    env = {k: v for k, v in os.environ.items() if k != "CALSYNC_PROFILE_DIR"}
    if asked:
        env["CALSYNC_PROFILE_DIR"] = str(tmp_path)
    pid = subprocess.run(
        [sys.executable, "-c", _PROFILED], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    written = tmp_path / f"worker-{pid}.prof"
    assert written.exists() == asked
    if asked:
        functions = {name for _, _, name in pstats.Stats(str(written)).stats}  # type: ignore[attr-defined]
        assert "spend" in functions
