"""`calsync auth google USER`: authorize calsync for a user's Google Calendar and keep the
token in the user's `google_token_file` (mode 0600, `sync.backends.google.save_token_file`).

Two ways, both google-auth-oauthlib's installed-app flow with a Desktop OAuth client
(`--client-secrets client_secret.json`, downloaded from the Google Cloud console):

- on a desktop, `InstalledAppFlow.run_local_server()`: a browser opens, Google redirects
  to a listener on localhost, done;
- on a headless server (`--no-browser`, or no display): google-auth-oauthlib 1.x has no
  `run_console` any more (Google retired the out-of-band copy-a-code page), so this prints
  the authorization URL (`flow.authorization_url()`) to open on any machine; Google then
  redirects that browser to http://localhost:PORT/?code=..., a page that does not load;
  paste its address (or just the code) here and `flow.fetch_token(code=...)` trades it for
  the token. https://developers.google.com/identity/protocols/oauth2/native-app#redirect-uri_loopback
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync.cli.common import (
    EXIT_PROBLEMS,
    CommandError,
    add_config_option,
    config_from,
    run_guarded,
    user_from,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "auth",
        help="authorize calsync for a user's Google Calendar",
        description="Authorize calsync for a user's Google Calendar and store the token "
        "(0600) in the user's google_token_file. Exit status 0 stored, 1 Google refused "
        "or the flow failed, 2 bad config, unknown user or missing client secrets.",
    )
    sub = parser.add_subparsers(dest="service", metavar="SERVICE", required=True)
    google = sub.add_parser("google", help="the installed-app OAuth flow for one user")
    add_config_option(google)
    google.add_argument("user", metavar="USER", help="the user's mailbox")
    google.add_argument(
        "--client-secrets",
        default="client_secret.json",
        metavar="PATH",
        help="the Desktop OAuth client's JSON (default: %(default)s)",
    )
    google.add_argument(
        "--no-browser",
        action="store_true",
        help="headless: print the URL and read the redirected address back (default when "
        "there is no display)",
    )
    google.add_argument(
        "--port",
        type=int,
        default=0,
        help="localhost port of the redirect (desktop default: any free one; headless: 8085)",
    )
    google.set_defaults(run=lambda args: run_guarded("auth google", args, auth_google))


def auth_google(args: Any) -> int:
    from sync.backends.google import SCOPES, save_token_file

    config = config_from(args)
    user = user_from(config, args.user)
    if user.google_service_account_file is not None:
        raise CommandError(f"{user.mailbox} uses a service account: nothing to authorize")
    if user.google_token_file is None:
        raise CommandError(
            f"{user.mailbox} has no google_token_file: set it in {args.config} first"
        )
    client_config = _client_config(Path(args.client_secrets), config.google_token_uri)
    token_uri = next(iter(client_config.values()))["token_uri"]
    if urlsplit(token_uri).hostname in LOOPBACK:
        # oauthlib refuses plain http; a token endpoint on this machine (a stand-in) is fine
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

    from google_auth_oauthlib.flow import InstalledAppFlow  # type: ignore[import-untyped]

    flow = InstalledAppFlow.from_client_config(client_config, scopes=SCOPES)
    headless = args.no_browser or not _has_display()
    try:
        if headless:
            creds = _paste_flow(flow, args.port or 8085)
        else:
            creds = flow.run_local_server(host="localhost", port=args.port, open_browser=True)
    except CommandError:
        raise
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # oauthlib / requests: Google refused or could not be reached
        raise CommandError(
            f"Google did not grant a token: {type(exc).__name__}: {_first_line(exc)}",
            EXIT_PROBLEMS,
        ) from None
    if not getattr(creds, "refresh_token", None):
        raise CommandError(
            "Google granted no refresh token (remove calsync's access at "
            "https://myaccount.google.com/permissions and try again)",
            EXIT_PROBLEMS,
        )
    path = Path(user.google_token_file)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    save_token_file(path, creds)
    print(f"calsync auth google: token for {user.mailbox} saved to {path} (0600)", file=sys.stderr)
    return 0


def _client_config(path: Path, token_uri: str | None) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(
            f"cannot read the OAuth client file {path}: {exc.strerror}; download a Desktop "
            "client's JSON from the Google Cloud console (APIs & Services > Credentials)"
        ) from None
    except ValueError:
        raise CommandError(f"{path} is not JSON") from None
    kind = next((k for k in ("installed", "web") if k in data), None)
    if kind is None or not isinstance(data[kind], dict):
        raise CommandError(f"{path} is not an OAuth client file (no 'installed' section)")
    section = dict(data[kind])
    needed = ("client_id", "client_secret", "auth_uri", "token_uri")
    missing = [k for k in needed if k not in section]
    if missing and not (missing == ["token_uri"] and token_uri):
        raise CommandError(f"{path} lacks {', '.join(missing)}")
    if token_uri:  # [google] token_uri: a private endpoint or a stand-in
        section["token_uri"] = token_uri
    return {kind: section}


def _paste_flow(flow: Any, port: int) -> Any:
    flow.redirect_uri = f"http://localhost:{port}/"
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    print(
        "Open this address in a browser on any machine, and sign in as the user:\n\n"
        f"  {url}\n\n"
        f"Google then sends that browser to http://localhost:{port}/?... , a page that will "
        "not load. Paste its whole address (or just the code) here:",
        file=sys.stderr,
    )
    try:
        answer = input().strip()
    except EOFError:
        raise CommandError("no answer on standard input", EXIT_PROBLEMS) from None
    code = _code_from(answer, state)
    flow.fetch_token(code=code)
    return flow.credentials


def _code_from(answer: str, state: str) -> str:
    if not answer:
        raise CommandError("nothing pasted", EXIT_PROBLEMS)
    if "://" not in answer and "code=" not in answer:
        return answer  # the bare code
    query = parse_qs(urlsplit(answer).query if "://" in answer else answer)
    if "error" in query:
        raise CommandError(f"Google said: {query['error'][0]}", EXIT_PROBLEMS)
    if query.get("state", [state])[0] != state:
        raise CommandError(
            "the pasted address belongs to another authorization (state differs): start over",
            EXIT_PROBLEMS,
        )
    if "code" not in query:
        raise CommandError("the pasted address has no code", EXIT_PROBLEMS)
    return query["code"][0]


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
