"""`calsync init`: write a commented starter calsync.toml (never over an existing file).

Every key is explained where it stands; the README's calsync.toml section has the rest.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sync.cli.common import DEFAULT_CONFIG, EXIT_PROBLEMS, CommandError, run_guarded

STARTER = """\
# calsync.toml: what calsync mirrors, and where. Paths are relative to this file.
# Check it with `calsync doctor`; add users with `calsync users add MAILBOX`.

[store]
path = "calsync.db"                 # state: id map, outbox (0600, event text sealed)

[google]
# api_endpoint = "http://127.0.0.1:8081/calendar/v3/"   # only for a local stand-in
# token_uri = "http://127.0.0.1:8081/token"             # only for a local stand-in

[exchange]
ews_url = "https://mail.example.com/EWS/Exchange.asmx"  # for full reads and write-backs
# ca_file = "exchange-ca.pem"       # a private CA that signed ews_url's certificate
auth = "basic"                      # or "ntlm"
# impersonation_username = "svc-calsync@example.com"   # one service account for all
# impersonation_password_env = "CALSYNC_EWS_PASSWORD"  # the variable holding its password

[outbox]
max_attempts = 8                    # then an item is quarantined (see `calsync status`)
backoff_base_s = 0.5                # doubled each attempt; Retry-After wins
backoff_max_s = 300

[sync]
policy = "exchange-wins"            # or "google-wins", "newest-wins": who wins a conflict
interval_s = 60                     # seconds between runs of `calsync sync --loop`
verify_interval_s = 3600            # how often the job checks that mapped items still exist

# One [[users]] table per mailbox (`calsync users add` writes them):
# [[users]]
# mailbox = "alice@example.com"
# logins = ["CONTOSO\\\\alice"]        # other names Alice signs in with (NTLM, UPN)
# google_calendar = "primary"
# google_token_file = "tokens/alice@example.com.json"  # `calsync auth google` writes it
# exchange_password_env = "ALICE_EWS_PASSWORD"
# direction = "both"                # or "exchange-to-google", "google-to-exchange"
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a commented starter calsync.toml",
        description="Write a commented starter calsync.toml. It never overwrites a file: "
        "exit status 1 if PATH exists.",
    )
    parser.add_argument(
        "--path", default=DEFAULT_CONFIG, help="where to write it (default: %(default)s)"
    )
    parser.set_defaults(run=lambda args: run_guarded("init", args, init))


def init(args: Any) -> int:
    path = Path(args.path)
    try:
        # O_EXCL: refuse an existing file, even one created a moment ago
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(f"{path} exists; not overwriting it", EXIT_PROBLEMS) from None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}", EXIT_PROBLEMS) from None
    with os.fdopen(fd, "w") as handle:
        handle.write(STARTER)
    print(f"wrote {path}; next: calsync users add MAILBOX --config {path}", file=sys.stderr)
    return 0
