"""calsync.toml: a good file reads into typed values; each mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync.config import ConfigError, load_config

GOOD = """
[store]
path = "state/calsync.db"
[google]
api_endpoint = "http://127.0.0.1:8081/calendar/v3/"
[exchange]
ews_url = "https://127.0.0.1:8443/EWS/Exchange.asmx"
[[users]]
mailbox = "Alice@Example.com"
logins = ["CONTOSO\\\\alice"]
google_token_file = "tokens/alice.json"
exchange_password_env = "ALICE_EWS_PASSWORD"
[[users]]
mailbox = "bob@example.com"
direction = "google-to-exchange"
google_service_account_file = "sa.json"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calsync.toml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.store_path == tmp_path / "state/calsync.db"  # relative to the file
    alice, bob = config.users
    assert alice.mailbox == "alice@example.com"
    assert alice.google_token_file == tmp_path / "tokens/alice.json"
    assert config.user_named("contoso\\ALICE") is alice
    assert config.user_named("ALICE@example.com") is alice
    assert config.user_named("carol@example.com") is None
    assert not bob.mirrors_to_google and alice.mirrors_to_google
    assert config.google_api_endpoint == "http://127.0.0.1:8081/calendar/v3/"


MISTAKES = [
    # (text, words the one-line message must contain)
    ("[store\npath = 1", "not valid TOML"),
    ("[stor]\npath = 'x'", "unknown key 'stor'"),
    ("[store]\npath = 3", "[store]: path must be a non-empty string"),
    ("[google]\napi_endpoint = 'ftp://x'", "api_endpoint must be an http"),
    ("[[users]]\nmailbox = 'nobody'", "mailbox must be an e-mail address"),
    ("[[users]]\nmailbox = 'a@x'\ndirection = 'sideways'", "direction must be one of"),
    ("[[users]]\nmailbox = 'a@x'\ncolour = 'blue'", "unknown key 'colour'"),
    (
        "[[users]]\nmailbox = 'a@x'\ngoogle_token_file = 't'\ngoogle_service_account_file = 's'",
        "not both",
    ),
    ("[[users]]\nmailbox = 'a@x'\n[[users]]\nmailbox = 'A@x'", "names two users"),
    ("[outbox]\nmax_attempts = 0", "at least 1"),
    ("[exchange]\nauth = 'kerberos'", "auth must be 'basic' or 'ntlm'"),
    ("[sync]\nverify_interval_s = -1", "[sync]: verify_interval_s must be a number of seconds"),
]


@pytest.mark.parametrize(("text", "says"), MISTAKES)
def test_mistakes_are_one_line(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert says in message
    assert "\n" not in message


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*No such file"):
        load_config(tmp_path / "nope.toml")


def test_the_readme_example_is_a_valid_config() -> None:
    import re
    import tomllib

    from sync.config import parse_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"### calsync.toml\n\n```toml\n(.*?)```", readme, re.S)
    assert block, "the README lost its calsync.toml example"
    config = parse_config(tomllib.loads(block.group(1)), base=Path("/etc/calsync"))
    alice, bob = config.users
    assert config.user_named("contoso\\alice") is alice
    assert bob.google_service_account_file == Path("/etc/calsync/sa.json")


def test_the_readme_sync_block_is_valid_and_verifies_hourly_by_default(tmp_path: Path) -> None:
    import re
    import tomllib

    from sync.config import parse_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```toml\n(\[sync\]\n.*?)```", readme, re.S)
    assert block, "the README lost its [sync] example"
    config = parse_config(tomllib.loads(block.group(1)), base=tmp_path)
    assert config.sync.verify_interval_s == 3600.0
    assert load_config(write(tmp_path, GOOD)).sync.verify_interval_s == 3600.0
    quick = load_config(write(tmp_path, "[sync]\nverify_interval_s = 0\n"))
    assert quick.sync.verify_interval_s == 0.0  # every run
