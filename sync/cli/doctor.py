"""`calsync doctor`: check the config, the mitmproxy CA, the state store, and for each user
that both sides answer with the configured credentials (Google: calendars.get on the
user's calendar; Exchange: GetFolder of the calendar, through exchangelib, never through a
proxy). One line per check; each problem says what to do. Exit status 1 on any problem.

No secret is printed: only variable names, file names and the kind of failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    add_config_option,
    config_from,
    run_guarded,
    user_from,
)
from sync.config import Config, UserConfig
from sync.state.base import StoreError

#: Seconds a side may take to answer a doctor's question.
TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"ok       {self.what}" if self.ok else f"PROBLEM  {self.what}: {self.fix}"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the config, the mitmproxy CA and both sides' credentials per user",
        description="One line per check, each problem with what to do. Exit status 0 all "
        "good, 1 problems found, 2 the config cannot be read.",
    )
    add_config_option(parser)
    parser.add_argument(
        "--confdir",
        default="~/.mitmproxy",
        help="mitmproxy's confdir, where its CA is (default: %(default)s)",
    )
    parser.add_argument("--user", action="append", default=[], metavar="MAILBOX")
    parser.add_argument("--offline", action="store_true", help="check files only; ask neither side")
    parser.set_defaults(run=lambda args: run_guarded("doctor", args, doctor))


def doctor(args: Any) -> int:
    config = config_from(args)
    findings = [Finding(True, f"config {args.config} reads ({len(config.users)} user(s))")]
    users = [user_from(config, name) for name in args.user] or list(config.users)
    if not config.users:
        findings.append(
            Finding(
                False, "no users configured", f"calsync users add MAILBOX --config {args.config}"
            )
        )
    findings += check_ca(Path(args.confdir).expanduser())
    findings += check_store(config)
    findings += check_exchange_settings(config)
    for user in users:
        findings += check_user(config, user, online=not args.offline)
    for finding in findings:
        print(finding.line())
    problems = sum(1 for f in findings if not f.ok)
    print(f"{problems} problem(s)" if problems else "all good")
    return EXIT_PROBLEMS if problems else EXIT_OK


def check_ca(confdir: Path) -> list[Finding]:
    cert = confdir / "mitmproxy-ca-cert.pem"
    key = confdir / "mitmproxy-ca.pem"
    if not cert.exists():
        return [
            Finding(
                False,
                f"mitmproxy CA not found at {cert}",
                "start mitmdump once (it writes its CA there; --confdir for another place), "
                "then install mitmproxy-ca-cert.pem on every mail client",
            )
        ]
    found = [Finding(True, f"mitmproxy CA at {cert}")]
    if key.exists() and key.stat().st_mode & 0o077:
        found.append(
            Finding(
                False,
                f"{key} (the CA's private key) is readable by others",
                f"chmod 600 {key}",
            )
        )
    return found


def check_store(config: Config) -> list[Finding]:
    if config.store_url is not None:
        return check_shared_store(config)
    path = Path(config.store_path)
    if not path.exists():
        parent = path.parent
        if not os.access(parent if parent.exists() else parent.parent, os.W_OK):
            return [Finding(False, f"cannot create the store {path}", f"make {parent} writable")]
        return [Finding(True, f"store {path} (created on first start)")]
    found = [Finding(True, f"store {path}")]
    for file in (path, path.with_name(path.name + ".key")):
        if file.exists() and file.stat().st_mode & 0o077:
            found.append(Finding(False, f"{file} is readable by others", f"chmod 600 {file}"))
    return found


def check_shared_store(config: Config) -> list[Finding]:
    """A PostgreSQL store: its key in the environment, the server reachable, the schema
    current (opening migrates it, as every node does at start)."""
    from sync.state import open_state
    from sync.state.postgres import describe

    where = describe(config.store_url or "")
    try:
        open_state(config).close()
    except StoreError as exc:
        return [Finding(False, f"store {where}: {exc}", "see README, Several nodes")]
    return [Finding(True, f"store {where} (PostgreSQL, shared by the nodes)")]


def check_exchange_settings(config: Config) -> list[Finding]:
    if not config.exchange_ews_url:
        return [
            Finding(
                False,
                "[exchange] ews_url is not set",
                "set it to the EWS endpoint (https://HOST/EWS/Exchange.asmx): full reads and "
                "write-backs need it",
            )
        ]
    found = []
    if config.exchange_ca_file is not None and not config.exchange_ca_file.exists():
        found.append(
            Finding(
                False,
                f"[exchange] ca_file {config.exchange_ca_file} does not exist",
                "point it at the PEM of the CA that signed ews_url's certificate",
            )
        )
    env = config.exchange_impersonation_password_env
    if config.exchange_impersonation_username and not (env and os.environ.get(env)):
        found.append(
            Finding(
                False,
                f"impersonation password variable {env or '(none)'} is not set",
                "set impersonation_password_env and export that variable",
            )
        )
    return found


def check_user(config: Config, user: UserConfig, *, online: bool) -> list[Finding]:
    found = check_google_files(user)
    if online and all(f.ok for f in found):
        found.append(_ask(f"{user.mailbox}: Google", lambda: _google_probe(config, user)))
    exchange = check_exchange_files(config, user)
    found += exchange
    if online and config.exchange_ews_url and all(f.ok for f in exchange):
        found.append(_ask(f"{user.mailbox}: Exchange", lambda: _exchange_probe(config, user)))
    return found


def check_google_files(user: UserConfig) -> list[Finding]:
    who = user.mailbox
    if user.google_service_account_file is not None:
        if not user.google_service_account_file.exists():
            return [
                Finding(
                    False,
                    f"{who}: service account file {user.google_service_account_file} is missing",
                    "download the key of the delegated service account there",
                )
            ]
        return [Finding(True, f"{who}: service account file present")]
    if user.google_token_file is None:
        return [
            Finding(
                False,
                f"{who}: no Google credentials configured",
                "set google_token_file and run `calsync auth google " + who + "`",
            )
        ]
    if not user.google_token_file.exists():
        return [
            Finding(
                False,
                f"{who}: Google token file {user.google_token_file} is missing",
                f"run `calsync auth google {who}`",
            )
        ]
    found = [Finding(True, f"{who}: Google token file present")]
    if user.google_token_file.stat().st_mode & 0o077:
        found.append(
            Finding(
                False,
                f"{who}: {user.google_token_file} is readable by others",
                f"chmod 600 {user.google_token_file}",
            )
        )
    return found


def check_exchange_files(config: Config, user: UserConfig) -> list[Finding]:
    if config.exchange_impersonation_username:
        return []
    env = user.exchange_password_env
    if not env:
        return [
            Finding(
                False,
                f"{user.mailbox}: no exchange_password_env",
                "name the environment variable that holds the Exchange password",
            )
        ]
    if not os.environ.get(env):
        return [
            Finding(
                False,
                f"{user.mailbox}: the variable {env} is not set",
                f"export {env} (mitmdump and `calsync sync` need it too)",
            )
        ]
    return [Finding(True, f"{user.mailbox}: Exchange password in {env}")]


def _ask(what: str, probe: Callable[[], str]) -> Finding:
    try:
        return Finding(True, f"{what}: {probe()}")
    except DoctorProblem as problem:
        return Finding(False, f"{what}: {problem.what}", problem.fix)


class DoctorProblem(Exception):
    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def _google_probe(config: Config, user: UserConfig) -> str:
    from google.auth.exceptions import RefreshError, TransportError

    from ews_parser.errors import CalsyncError
    from sync.backends.base import GoogleError
    from sync.backends.google import GoogleCalendar

    try:
        calendar = GoogleCalendar(config, user)
        # calendars.get: the cheapest call that proves the token and the calendar id
        answer = calendar.calendar()
    except RefreshError:
        raise DoctorProblem(
            "Google refused the stored token (expired or revoked)",
            f"run `calsync auth google {user.mailbox}` again",
        ) from None
    except TransportError:
        raise DoctorProblem(
            "Google's token endpoint is unreachable", "check the network and [google] token_uri"
        ) from None
    except GoogleError as exc:
        if exc.status == 0:
            raise DoctorProblem(
                "Google is unreachable", "check the network and [google] api_endpoint"
            ) from None
        if exc.status in (401, 403):
            raise DoctorProblem(
                f"Google refused the credentials ({exc.status} {exc.reason})",
                f"run `calsync auth google {user.mailbox}` again",
            ) from None
        if exc.status == 404:
            raise DoctorProblem(
                f"Google has no calendar {user.google_calendar!r} for this account",
                'fix google_calendar ("primary" is the account\'s own)',
            ) from None
        raise DoctorProblem(f"Google answered {exc}", "try again later") from None
    except CalsyncError as exc:
        raise DoctorProblem(str(exc), "fix the token file or run `calsync auth google`") from None
    return f"calendar {answer.get('id', user.google_calendar)!r} answers"


def _exchange_probe(config: Config, user: UserConfig) -> str:
    from exchangelib.protocol import BaseProtocol

    from sync.backends.base import ExchangeError
    from sync.backends.exchange import ExchangeMailbox

    BaseProtocol.TIMEOUT = TIMEOUT_S
    try:
        mailbox = ExchangeMailbox(config, user)
        mailbox.calendar_folder_id()  # GetFolder on the calendar
    except ExchangeError as exc:
        text = str(exc)
        if "refused the credentials" in text:
            fix = f"check the password in {user.exchange_password_env or 'the variable'}"
        elif "unreachable" in text or "unavailable" in text:
            fix = "check [exchange] ews_url, the network and ca_file"
        else:
            fix = "check [exchange] ews_url and the account"
        raise DoctorProblem(text, fix) from None
    except Exception as exc:  # exchangelib's own, from Account set-up
        raise DoctorProblem(
            f"Exchange error {type(exc).__name__}", "check [exchange] ews_url and ca_file"
        ) from None
    return "calendar folder answers (GetFolder)"
