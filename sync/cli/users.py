"""`calsync users add|list|remove`: the [[users]] tables of calsync.toml.

The file is edited as text, so comments and layout elsewhere stay as they are: `add`
appends a [[users]] table at the end; `remove` cuts out that user's table (from its
`[[users]]` line, with the comment lines right above it, to the next table). Every edit
is checked before it is written: the new text must parse, and must say exactly what the
old one did, with that one user added or removed; otherwise the file is left alone and
the command says so. The file is replaced atomically and keeps its mode.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from sync.cli.common import (
    EXIT_PROBLEMS,
    CommandError,
    add_config_option,
    config_from,
    print_table,
    run_guarded,
    user_from,
)
from sync.config import DIRECTIONS, Config, ConfigError, parse_config

_TABLE = re.compile(r"^\s*\[")
_USERS = re.compile(r"^\s*\[\[\s*users\s*\]\]\s*(#.*)?$")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "users",
        help="add, list or remove the users calsync mirrors",
        description="Edit the [[users]] tables of calsync.toml (comments elsewhere are kept).",
    )
    sub = parser.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="add a user", description="Append a [[users]] table.")
    add_config_option(add)
    add.add_argument("mailbox", metavar="MAILBOX", help="the Exchange mailbox address")
    add.add_argument("--login", action="append", default=[], help="another sign-in name")
    add.add_argument("--google-calendar", default=None, help="calendar id (default primary)")
    add.add_argument(
        "--google-token-file",
        default=None,
        help="authorized-user token file (default tokens/MAILBOX.json, written by "
        "`calsync auth google`)",
    )
    add.add_argument("--google-service-account-file", default=None)
    add.add_argument("--google-user", default=None, help="the Google account, if not MAILBOX")
    add.add_argument("--exchange-username", default=None)
    add.add_argument(
        "--exchange-password-env", default=None, help="variable holding the Exchange password"
    )
    add.add_argument("--direction", choices=DIRECTIONS, default=None)
    add.set_defaults(run=lambda args: run_guarded("users add", args, users_add))

    listing = sub.add_parser("list", help="list the users")
    add_config_option(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(run=lambda args: run_guarded("users list", args, users_list))

    remove = sub.add_parser("remove", help="remove a user's table (their state stays)")
    add_config_option(remove)
    remove.add_argument("mailbox", metavar="MAILBOX")
    remove.set_defaults(run=lambda args: run_guarded("users remove", args, users_remove))


# --- list --------------------------------------------------------------------------------


def users_list(args: Any) -> int:
    config = config_from(args)
    rows = []
    for user in config.users:
        if user.google_service_account_file is not None:
            google = f"service account {user.google_service_account_file}"
        elif user.google_token_file is not None:
            state = "present" if user.google_token_file.exists() else "missing"
            google = f"{user.google_token_file} ({state})"
        else:
            google = "not configured"
        rows.append(
            {
                "mailbox": user.mailbox,
                "logins": list(user.logins),
                "direction": user.direction,
                "google_calendar": user.google_calendar,
                "google": google,
                "exchange_password_env": user.exchange_password_env,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_table(
        f"users in {config.source}",
        ["mailbox", "direction", "Google calendar", "Google credentials", "password from"],
        [
            [
                r["mailbox"],
                r["direction"],
                r["google_calendar"],
                r["google"],
                r["exchange_password_env"] or "-",
            ]
            for r in rows
        ],
    )
    return 0


# --- add -----------------------------------------------------------------------------------


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes; control characters \\uXXXX).
    return json.dumps(value, ensure_ascii=False)


def user_table(values: dict[str, Any]) -> str:
    lines = ["[[users]]"]
    for key, value in values.items():
        if value is None or value == []:
            continue
        if isinstance(value, list):
            lines.append(f"{key} = [{', '.join(_toml_string(v) for v in value)}]")
        else:
            lines.append(f"{key} = {_toml_string(str(value))}")
    return "\n".join(lines) + "\n"


def users_add(args: Any) -> int:
    config = config_from(args)
    mailbox = args.mailbox.strip().lower()
    if config.user_named(mailbox) is not None:
        raise CommandError(f"{mailbox} is already configured in {args.config}", EXIT_PROBLEMS)
    token_file = args.google_token_file
    if token_file is None and args.google_service_account_file is None:
        token_file = f"tokens/{mailbox}.json"
    values = {
        "mailbox": mailbox,
        "logins": args.login,
        "google_calendar": args.google_calendar,
        "google_token_file": token_file,
        "google_service_account_file": args.google_service_account_file,
        "google_user": args.google_user,
        "exchange_username": args.exchange_username,
        "exchange_password_env": args.exchange_password_env,
        "direction": args.direction,
    }
    path = Path(args.config)
    text = path.read_text(encoding="utf-8")
    new_text = text + ("" if text.endswith("\n") or not text else "\n") + "\n"
    new_text += user_table(values)
    checked = _check(path, new_text)
    if [u.mailbox for u in checked.users] != [*(u.mailbox for u in config.users), mailbox]:
        raise CommandError(f"could not add {mailbox} safely; {path} is unchanged")
    _replace(path, new_text)
    print(f"added {mailbox} to {path}", file=sys.stderr)
    user = checked.user_named(mailbox)
    if user is not None and user.google_token_file and not user.google_token_file.exists():
        print(f"next: calsync auth google {mailbox} --config {path}", file=sys.stderr)
    return 0


# --- remove -----------------------------------------------------------------------------


def users_remove(args: Any) -> int:
    config = config_from(args)
    user = user_from(config, args.mailbox)
    path = Path(args.config)
    text = path.read_text(encoding="utf-8")
    new_text = without_user(text, user.mailbox)
    if new_text is None:
        raise CommandError(
            f"could not find {user.mailbox}'s [[users]] table as text in {path}; "
            "edit the file by hand",
            EXIT_PROBLEMS,
        )
    checked = _check(path, new_text)
    if checked.users != tuple(u for u in config.users if u.mailbox != user.mailbox):
        raise CommandError(f"could not remove {user.mailbox} safely; {path} is unchanged")
    _replace(path, new_text)
    print(f"removed {user.mailbox} from {path} (its state in the store is kept)", file=sys.stderr)
    return 0


def without_user(text: str, mailbox: str) -> str | None:
    """`text` without the [[users]] table whose mailbox is `mailbox` (and the comment lines
    right above it), or None when no such table is found as text."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _USERS.match(line)]
    for start in starts:
        end = next((j for j in range(start + 1, len(lines)) if _TABLE.match(lines[j])), len(lines))
        # the comment lines that lead into the next table belong to it
        while end - 1 > start and lines[end - 1].lstrip().startswith("#"):
            end -= 1
        try:
            table = tomllib.loads("".join(lines[start + 1 : end]))
        except tomllib.TOMLDecodeError:
            continue
        if str(table.get("mailbox", "")).strip().lower() != mailbox:
            continue
        first = start
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        return "".join(lines[:first] + lines[end:])
    return None


# --- writing ------------------------------------------------------------------------------


def _check(path: Path, text: str) -> Config:
    try:
        return parse_config(tomllib.loads(text), base=path.resolve().parent, source=path)
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise CommandError(f"the edit would break {path} ({exc}); it is unchanged") from None


def _replace(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(f".{path.name}.calsync-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
