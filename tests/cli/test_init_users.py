"""`calsync init` and `calsync users add|list|remove`, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import calsync


def test_init_writes_a_starter_that_reads_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "calsync.toml"
    done = calsync("init", "--path", str(path))
    assert done.returncode == 0, done.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert text.startswith("# calsync.toml")
    assert "\nverify_interval_s = 3600 " in text
    listed = calsync("users", "list", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    again = calsync("init", "--path", str(path))
    assert again.returncode == 1
    assert again.stderr.strip() == f"calsync init: {path} exists; not overwriting it"
    assert path.read_text() == text


def test_users_add_list_remove_keep_the_comments(tmp_path: Path) -> None:
    path = tmp_path / "calsync.toml"
    calsync("init", "--path", str(path))
    starter = path.read_text()
    config = ("--config", str(path))
    added = calsync(
        "users", "add", "Alice@Example.com", "--login", "CONTOSO\\alice",
        "--exchange-password-env", "ALICE_EWS_PASSWORD", *config,
    )
    assert added.returncode == 0, added.stderr
    assert "calsync auth google alice@example.com" in added.stderr
    calsync("users", "add", "bob@example.com", "--direction", "exchange-to-google", *config)
    assert path.read_text().startswith(starter)  # appended; every comment kept

    listed = calsync("users", "list", "--json", *config)
    users = json.loads(listed.stdout)
    assert [u["mailbox"] for u in users] == ["alice@example.com", "bob@example.com"]
    assert users[0]["logins"] == ["CONTOSO\\alice"]
    assert users[0]["google"].endswith("tokens/alice@example.com.json (missing)")
    plain = calsync("users", "list", *config)
    assert plain.stdout.splitlines()[0].split("\t")[0] == "mailbox"
    assert plain.stdout.splitlines()[2].split("\t")[:2] == ["bob@example.com", "exchange-to-google"]

    duplicate = calsync("users", "add", "CONTOSO\\alice", *config)
    assert duplicate.returncode == 1 and "already configured" in duplicate.stderr

    removed = calsync("users", "remove", "alice@example.com", *config)
    assert removed.returncode == 0, removed.stderr
    text = path.read_text()
    assert text.startswith(starter)
    assert "alice" not in text[len(starter):] and "bob@example.com" in text
    remaining = json.loads(calsync("users", "list", "--json", *config).stdout)
    assert [u["mailbox"] for u in remaining] == ["bob@example.com"]


def test_users_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    missing = calsync("users", "list", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "calsync init" in missing.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text("[store\npath = 1\n")
    broken = calsync("users", "add", "x@example.com", "--config", str(bad))
    assert broken.returncode == 2 and "not valid TOML" in broken.stderr
    assert "Traceback" not in broken.stderr

    path = tmp_path / "calsync.toml"
    calsync("init", "--path", str(path))
    starter = path.read_text()
    unknown = calsync("users", "remove", "nobody@example.com", "--config", str(path))
    assert unknown.returncode == 2 and "no user 'nobody@example.com'" in unknown.stderr
    not_address = calsync("users", "add", "not-an-address", "--config", str(path))
    assert not_address.returncode == 2 and "mailbox must be an e-mail address" in not_address.stderr
    assert path.read_text() == starter
