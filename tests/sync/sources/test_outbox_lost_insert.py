"""The worker's Google insert whose record was lost (the answer lost, or the node stopped
between the insert and its record, and another node's job found the event first): the
pair is recorded before the insert (sync/fast_path.py `_put`, `Reconciler.intend`), so
an edit made in Google right after is merged against what the worker wrote, and carried
to Exchange. Without the record, the job adopts the event by its stamps alone, and an edit
made within a second of the insert reads as calsync's own version: Exchange's older
fields were written over it (found by tests/e2e/test_nodes.py: a node paused between an
insert and its record)."""

from __future__ import annotations

import threading

from mapping.event import event_id_for
from sync.sources.job import SyncJob
from tests.e2e.clients import send_json, wait_for
from tests.sync.conftest import ALICE
from tests.sync.sources.test_outbox import _Setup, setup

__all__ = ["setup"]  # the fixture


def test_a_google_edit_right_after_an_insert_not_yet_recorded_reaches_exchange(
    setup: _Setup,
) -> None:
    warm = setup.item("Mirrored before")  # the worker's client has its token after this
    setup.store.enqueue(ALICE, warm.id, "upsert", now=0.0, change_key=warm.changekey)
    setup.drain()
    item = setup.item("As the client made it")
    setup.store.enqueue(ALICE, item.id, "upsert", now=0.0, change_key=item.changekey)
    # Google carries the next insert out and holds its answer: the worker waits there, as
    # a node stopped between an insert and its record
    faults = setup.google.url + "/_admin/faults"
    send_json(faults, "POST", {"kind": "heldAnswer", "count": 1})
    worker = threading.Thread(target=setup.drain)
    try:
        worker.start()
        event_id = event_id_for(item.id)
        made = wait_for(setup.live_events, lambda e: event_id in e, timeout=20, what="the insert")
        assert event_id in made  # made; the worker has not heard so
        setup.service.events().patch(
            calendarId="primary",
            eventId=event_id,
            body={"summary": "Edited in Google at once"},
            sendUpdates="none",
        ).execute()
        SyncJob(setup.config, setup.store).run()  # another node's job, meanwhile
    finally:
        send_json(faults, "DELETE")
        worker.join(30)

    item.refresh()
    assert item.subject == "Edited in Google at once"
    assert setup.live_events()[event_id]["summary"] == "Edited in Google at once"


def test_an_insert_that_got_no_answer_is_sent_again_on_the_retry(setup: _Setup) -> None:
    """The pair is recorded as intended before the insert; when the insert got no answer
    (the connection dropped: made or not, nobody knows), the entry's retry reads both
    sides first and makes the event when the insert never arrived (one it finds is merged
    against what the first insert wrote), never taking the intended pair for an event
    Google holds."""
    item = setup.item("Made while Google dropped connections")
    setup.store.enqueue(ALICE, item.id, "upsert", now=0.0, change_key=item.changekey)
    faults = setup.google.url + "/_admin/faults"
    # the insert and the client's own second try both dropped: the attempt fails
    send_json(faults, "POST", {"kind": "outage", "count": 2})
    try:
        setup.drain()  # the entry's retry follows
        assert send_json(faults, "GET") == []  # spent: the first attempt met it
    finally:
        send_json(faults, "DELETE")
    assert setup.quiet()
    assert event_id_for(item.id) in setup.live_events()
