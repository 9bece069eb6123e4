"""Series exceptions (sync/series.py) through both stand-ins and the unmodified clients."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from mapping.event import event_id_for
from sync.backends.base import GoogleError
from sync.backends.clients import Clients
from sync.config import load_config
from sync.reconcile import Reconciler
from sync.sources.job import SyncJob
from sync.store import Store
from tests.addon.conftest import write_config
from tests.sync.conftest import ALICE, BERLIN, calendar_service, ews_account
from tests.sync.sources.test_outbox import weekly_series


def _google_faults(google: GoogleCalendarServer, method: str, spec: Any = None) -> None:
    request = urllib.request.Request(
        google.url + "/_admin/faults",
        data=json.dumps(spec).encode() if spec is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request) as reply:
        reply.read()


def test_an_exception_whose_google_write_failed_is_written_by_the_next_run(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    # the pair takes the master's version when the master is carried, before its
    # exceptions: once they fail (a 429) and the feed is kept, its next listing of the
    # master must not read as carried already (found by the state machine)
    config = load_config(write_config(tmp_path, google, ews_url=ews.url, users=(ALICE,)))
    store = Store(config.store_path)
    try:
        job = SyncJob(config, store)
        account = ews_account(ews.url, default_timezone=BERLIN)
        series = weekly_series(account)
        job.run()  # the series in Google, no exception yet
        occurrence = series.occurrence(index=4)
        occurrence.refresh()
        occurrence.subject = "Team sync (renamed)"
        occurrence.save(update_fields=["subject"])

        # a run carries the master's new version, then Google refuses its exceptions
        user = config.user_named(ALICE)
        assert user is not None
        clients = Clients(config)
        google_backend, exchange_backend = clients.google(user), clients.exchange(user)
        reconciler = Reconciler(config, store)
        run = reconciler.begin(ALICE)
        reconciler.reconcile_pair(user, google_backend, exchange_backend, series.id, run)
        _google_faults(google, "POST", {"kind": "429"})
        try:
            with pytest.raises(GoogleError):
                reconciler.reconcile_exceptions(
                    user, google_backend, exchange_backend, series.id, run
                )
        finally:
            _google_faults(google, "DELETE")
        reconciler.finish(run)

        job.run()  # the feed lists the master again: its exception is carried now
        instance = (
            calendar_service(google.api_endpoint)
            .events()
            .get(calendarId="primary", eventId=f"{event_id_for(series.id)}_20260323T080000Z")
            .execute()
        )
        assert instance["summary"] == "Team sync (renamed)"
    finally:
        store.close()
