"""The in-process handle: start on an ephemeral port in a background thread, stop."""

from __future__ import annotations

from emulators.google import GoogleCalendarServer
from tests.emulators.google.conftest import ALICE, credentials, service
from tests.emulators.keep_alive import STALL_MS, body_wait_ms


def test_two_servers_get_their_own_ports_and_state() -> None:
    with GoogleCalendarServer(users=[ALICE]) as one, GoogleCalendarServer() as two:
        assert one.port != two.port and 0 not in (one.port, two.port)
        assert one.url == f"http://127.0.0.1:{one.port}"
        assert one.api_endpoint == f"{one.url}/calendar/v3/"
        assert one.batch_uri == f"{one.url}/batch/calendar/v3"
        assert service(one, credentials(one, ALICE)).calendarList().list().execute()["items"]
        assert ALICE not in two.state.accounts.users


def test_stop_releases_the_port() -> None:
    server = GoogleCalendarServer().start()
    port = server.port
    server.stop()
    # Binding the same port again works once the first server is gone.
    again = GoogleCalendarServer(port=port).start()
    try:
        assert again.port == port
    finally:
        again.stop()


def test_a_kept_alive_connection_never_waits_for_a_delayed_ack() -> None:
    """Headers and body go out as two sends: with Nagle's algorithm on, each body would
    wait ~40 ms for the client's delayed ACK."""
    with GoogleCalendarServer(users=[ALICE]) as server:
        calendar = "/calendar/v3/calendars/primary"
        waited = body_wait_ms(server.url, "GET", calendar,
                              headers={"Authorization": f"Bearer {ALICE}"})
    assert waited < STALL_MS, f"median {waited:.1f} ms between headers and body"
