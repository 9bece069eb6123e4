"""`calsync doctor`, `status` and `explain` through the real entry point, against both
stand-ins (EWS with TLS) and a state store filled through the Store API."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from emulators.ews import EwsServer
from emulators.google.server import GoogleCalendarServer
from sync.config import load_config
from sync.store import MappedItem, Store
from tests.cli.conftest import (
    ALICE,
    BOB,
    PASSWORDS,
    calsync,
    passwords_env,
    token_file,
    write_config,
)


def _confdir(tmp_path: Path) -> Path:
    confdir = tmp_path / "mitmproxy"
    confdir.mkdir()
    (confdir / "mitmproxy-ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return confdir


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_doctor_all_good(tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer) -> None:
    config = write_config(
        tmp_path, google_url=google.url, ews_url=ews.url, ca_file=ews.ca_path, users=(ALICE, BOB)
    )
    done = calsync(
        "doctor", "--config", str(config), "--confdir", str(_confdir(tmp_path)),
        env=passwords_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PROBLEM" not in done.stdout and done.stdout.strip().endswith("all good")
    assert f"{ALICE}: Google: calendar" in done.stdout
    assert f"{BOB}: Exchange: calendar folder answers (GetFolder)" in done.stdout
    for password in PASSWORDS.values():
        assert password not in done.stdout + done.stderr


def test_doctor_says_what_to_do_for_each_problem(
    tmp_path: Path, ews: EwsServer, google: GoogleCalendarServer
) -> None:
    config = write_config(
        tmp_path, google_url=google.url, ews_url=ews.url, ca_file=ews.ca_path, users=(ALICE, BOB)
    )
    # Alice: an expired access token and a revoked refresh token; a wrong password
    token_file(
        tmp_path / "tokens" / f"{ALICE}.json", google.token_uri, ALICE,
        token="", refresh_token="revoked-rt-5d2e",
    )
    env = {**passwords_env(), "CALSYNC_CLI_ALICE_PASSWORD": "wrong-Pw-83b1"}
    del env["CALSYNC_CLI_BOB_PASSWORD"]  # Bob: no password in the environment
    (tmp_path / "tokens" / f"{BOB}.json").chmod(0o644)
    done = calsync("doctor", "--config", str(config), "--confdir", str(tmp_path / "none"), env=env)
    assert done.returncode == 1
    problems = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM")]
    text = "\n".join(problems)
    assert "mitmproxy CA not found" in text and "start mitmdump once" in text
    assert f"{ALICE}: Google: Google refused the stored token" in text
    assert f"calsync auth google {ALICE}" in text
    assert f"{ALICE}: Exchange: Exchange refused the credentials" in text
    assert f"{BOB}: the variable CALSYNC_CLI_BOB_PASSWORD is not set" in text
    assert f"chmod 600 {tmp_path / 'tokens' / f'{BOB}.json'}" in text
    assert done.stdout.strip().endswith(f"{len(problems)} problem(s)")
    assert "wrong-Pw-83b1" not in done.stdout and "revoked-rt-5d2e" not in done.stdout


def test_doctor_unreachable_sides(tmp_path: Path) -> None:
    port = _closed_port()
    config = write_config(
        tmp_path,
        google_url=f"http://127.0.0.1:{port}",
        ews_url=f"https://127.0.0.1:{port}/EWS/Exchange.asmx",
        ca_file=None,
    )
    done = calsync(
        "doctor", "--config", str(config), "--confdir", str(_confdir(tmp_path)),
        env=passwords_env(),
    )
    assert done.returncode == 1
    assert f"PROBLEM  {ALICE}: Google: Google is unreachable" in done.stdout
    # unreachable or unavailable, as exchangelib words a refused connection
    assert f"PROBLEM  {ALICE}: Exchange: Exchange un" in done.stdout


def test_config_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    missing = calsync("doctor", "--config", str(tmp_path / "calsync.toml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("calsync doctor: no config at")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[users]]\nmailbox = 'x@example.com'\nbogus = 1\n")
    for command in ("doctor", "status"):
        done = calsync(command, "--config", str(bad))
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "unknown key 'bogus'" in done.stderr
    unknown = calsync("doctor", "--config", str(_minimal(tmp_path)), "--user", "eve@example.com")
    assert unknown.returncode == 2 and "no user 'eve@example.com'" in unknown.stderr


def _minimal(tmp_path: Path) -> Path:
    path = tmp_path / "minimal.toml"
    path.write_text(f'[store]\npath = "state.db"\n[[users]]\nmailbox = "{ALICE}"\n')
    return path


def _filled_store(tmp_path: Path) -> Path:
    config_path = _minimal(tmp_path)
    store = Store(load_config(config_path).store_path)
    store.save_mapping(
        MappedItem(ALICE, "AAMkItem1", "gevent1", "CK1", '"etag1"', "hash1", {"summary": "x"}),
        now=1_700_000_000.0,
    )
    store.enqueue(ALICE, "AAMkItem1", "update", now=1_700_000_100.0)
    bad = store.enqueue(ALICE, "AAMkItem2", "upsert", now=1_700_000_100.0)
    store.retry_later(bad, error="Google 403 forbidden: no access", at=0.0, quarantine=True)
    store.record_conflict(
        ALICE, "AAMkItem1", "gevent1", "summary", "exchange", "both changed", now=1_700_000_200.0
    )
    store.save_sync_state(ALICE, last_google_sync=1_700_000_300.0, last_error="Google 503")
    store.close()
    return config_path


def test_status_reports_each_user(tmp_path: Path) -> None:
    config = _filled_store(tmp_path)
    done = calsync("status", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    (alice,) = json.loads(done.stdout)["users"]
    assert alice["mapped_events"] == 1
    assert alice["outbox_pending"] == 1
    assert alice["quarantined"] == [
        {
            "id": 2,
            "ews_item_id": "AAMkItem2",
            "op": "upsert",
            "attempts": 1,
            "last_error": "Google 403 forbidden: no access",
        }
    ]
    assert alice["conflicts"] == 1 and alice["last_google_sync"] == 1_700_000_300.0
    assert alice["last_exchange_sync"] is None and alice["last_error"] == "Google 503"

    plain = calsync("status", "--config", str(config))
    header, row = plain.stdout.splitlines()[:2]
    assert header.split("\t")[:4] == ["mailbox", "mapped", "outbox", "quarantined"]
    assert row.split("\t")[:4] == [ALICE, "1", "1", "1"]
    assert row.split("\t")[4] == "never"
    assert "Google 403 forbidden: no access" in plain.stdout


def test_status_tells_a_current_error_from_a_past_one(tmp_path: Path) -> None:
    config_path = _minimal(tmp_path)
    store = Store(load_config(config_path).store_path)
    store.record_error(ALICE, "Google 0 unreachable: TimeoutError", now=1_700_000_000.0)
    healed = store.enqueue(ALICE, "AAMkItem1", "upsert", now=1_700_000_000.0)
    store.retry_later(healed, error="Google 0 unreachable", at=0.0, quarantine=True)
    store.close()

    now = json.loads(calsync("status", "--config", str(config_path), "--json").stdout)
    (alice,) = now["users"]
    assert alice["last_error"] == "Google 0 unreachable: TimeoutError"
    assert alice["last_error_at"] == 1_700_000_000.0 and alice["past_error"] is None
    assert len(alice["quarantined"]) == 1
    row = calsync("status", "--config", str(config_path)).stdout.splitlines()[1]
    assert row.split("\t")[7].startswith("now: Google 0 unreachable: TimeoutError (since ")

    # a run succeeded, and the two-way job carried the quarantined change
    store = Store(load_config(config_path).store_path)
    assert store.clear_error(ALICE, now=1_700_000_600.0)
    assert store.heal(healed)
    store.close()
    then = json.loads(calsync("status", "--config", str(config_path), "--json").stdout)
    (alice,) = then["users"]
    assert alice["last_error"] is None and alice["last_error_at"] is None
    assert alice["past_error"] == {
        "error": "Google 0 unreachable: TimeoutError",
        "at": 1_700_000_000.0,
        "resolved_at": 1_700_000_600.0,
    }
    assert alice["quarantined"] == []
    plain = calsync("status", "--config", str(config_path)).stdout
    row = plain.splitlines()[1]
    assert row.split("\t")[3] == "0"
    assert row.split("\t")[7].startswith("resolved: Google 0 unreachable: TimeoutError at ")
    assert "quarantined (" not in plain  # no table of healed entries


def test_status_without_a_store_says_so(tmp_path: Path) -> None:
    done = calsync("status", "--config", str(_minimal(tmp_path)))
    assert done.returncode == 2 and "no state store at" in done.stderr
    assert not (tmp_path / "state.db").exists()


def test_explain_by_either_id(tmp_path: Path) -> None:
    config = _filled_store(tmp_path)
    for name in ("gevent1", "AAMkItem1"):
        done = calsync("explain", name, "--config", str(config), "--json")
        assert done.returncode == 0, done.stderr
        (fact,) = json.loads(done.stdout)
        assert fact["mapping"]["google_event_id"] == "gevent1"
        assert [e["op"] for e in fact["outbox"]] == ["update"]
        assert fact["conflicts"][0]["winner"] == "exchange"
    quarantined = calsync("explain", "AAMkItem2", "--config", str(config))
    assert quarantined.returncode == 0
    assert "not mapped" in quarantined.stdout and "quarantined" in quarantined.stdout
    unknown = calsync("explain", "nothing-like-it", "--config", str(config))
    assert unknown.returncode == 1 and "nothing known about 'nothing-like-it'" in unknown.stderr


def test_undo_with_no_recorded_run_says_so(tmp_path: Path) -> None:
    # the full undo, through both stand-ins: tests/sync/test_undo.py
    config = _filled_store(tmp_path)
    done = calsync("undo", ALICE, "--config", str(config))
    assert done.returncode == 1 and "nothing to undo" in done.stdout, done.stderr
    assert done.stderr == ""
    missing = calsync("undo", ALICE, "--config", str(tmp_path / "nowhere.toml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
