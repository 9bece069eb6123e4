"""calsync.toml: what an administrator configures, read with the stdlib's tomllib.

Every mistake is one `ConfigError` line naming the key and what to do; paths are taken
relative to the file. An example with every key is in the README.

    [store]
    path = "calsync.db"                       # SQLite: one node
    # url = "postgresql://calsync@db.example.com/calsync"  # instead: a store nodes share
    # key_env = "CALSYNC_STORE_KEY"           # with url: the variable holding the sealing key
    # lease_s = 30                            # with url: a dead node's users move on after this
    [google]
    api_endpoint = "http://127.0.0.1:8081/calendar/v3/"   # optional, Google's own by default
    token_uri = "http://127.0.0.1:8081/token"             # optional, Google's own by default
    [exchange]
    ews_url = "https://127.0.0.1:8443/EWS/Exchange.asmx"  # for write-backs and full reads
    ca_file = "ews-ca.pem"                                # optional: trust this CA for ews_url
    streaming = true             # EWS streaming notifications: changes made without the proxy
    streaming_timeout_min = 29   # each streaming connection is opened again after this (1-30)
    [[users]]
    mailbox = "alice@example.com"
    logins = ["CONTOSO\\\\alice"]                           # other names alice signs in with
    google_calendar = "primary"
    google_token_file = "tokens/alice.json"   # authorized-user JSON as google-auth writes it
    exchange_password_env = "ALICE_EWS_PASSWORD"
    [push]                                    # optional: Google push notifications
    webhook_url = "https://calsync.example.com/google/push"  # what Google calls (HTTPS)
    listen_port = 8089                        # where calsync serve / the addon listen
    renew_before_s = 3600                     # channels are renewed this long before expiry
    [admin]                                   # optional: /metrics, /healthz, /readyz, console
    listen_host = "127.0.0.1"                 # where calsync serve / the addon listen
    listen_port = 8090                        # 0: any free port
    password_hash = "scrypt$16384$8$1$..."    # `calsync admin hash-password`; else read-only
    # trusted_header = "X-Forwarded-User"     # or a reverse proxy that signs administrators in
    # per_user_metrics = false                # per-user series in /metrics (users x 3 series)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ews_parser.errors import CalsyncError

Direction = Literal["both", "exchange-to-google", "google-to-exchange"]
DIRECTIONS: tuple[Direction, ...] = ("both", "exchange-to-google", "google-to-exchange")


class ConfigError(CalsyncError):
    """A configuration mistake, said in one line."""


@dataclass(frozen=True, slots=True)
class UserConfig:
    mailbox: str
    logins: tuple[str, ...] = ()
    google_calendar: str = "primary"
    google_token_file: Path | None = None
    google_service_account_file: Path | None = None
    google_user: str | None = None  # the Google account, when it differs from the mailbox
    exchange_username: str | None = None
    exchange_password_env: str | None = None
    direction: Direction = "both"
    policy: str | None = None  # this user's conflict policy, else [sync] policy

    @property
    def mirrors_to_google(self) -> bool:
        return self.direction in ("both", "exchange-to-google")

    def names(self) -> tuple[str, ...]:
        """Every name that identifies this user in traffic, lower-cased."""
        return (self.mailbox, *(login.lower() for login in self.logins))


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 300.0


POLICIES = ("exchange-wins", "google-wins", "newest-wins")


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    policy: str = "exchange-wins"
    modified_beats_delete: bool = False
    max_delete_share: float = 0.5
    window_days: int = 365
    interval_s: float = 60.0
    #: how often the job asks Exchange whether every mapped item still exists
    verify_interval_s: float = 3600.0


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class PushConfig:
    """[push]: Google push notifications (sync/sources/push.py). Google calls `webhook_url`,
    which must be public HTTPS; TLS is terminated in front of `listen_host:listen_port`. Without
    `webhook_url` the local listening address is used: only a local stand-in reaches it."""

    webhook_url: str | None = None
    listen_host: str = "127.0.0.1"
    listen_port: int = 8089
    renew_before_s: float = 3600.0
    channel_ttl_s: float | None = None  # None: Google's own default


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """[admin]: the admin server (sync/ops: /metrics, /healthz, /readyz and the console).
    Read-only unless an administrator signs in with the password `password_hash` was made
    from, or comes through a reverse proxy that sets `trusted_header` to who they are."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8090
    password_hash: str | None = None
    trusted_header: str | None = None
    per_user_metrics: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    store_path: Path
    users: tuple[UserConfig, ...]
    #: a PostgreSQL store several nodes share (None: SQLite at store_path)
    store_url: str | None = None
    #: with store_url: the environment variable holding the sealing key every node is given
    store_key_env: str = "CALSYNC_STORE_KEY"
    #: with store_url: how long a node's lease on a user lasts unrenewed (a dead node's users
    #: pass to another node after it; its outbox claims, never renewed, after twice it)
    store_lease_s: float = 30.0
    google_api_endpoint: str | None = None
    google_token_uri: str | None = None
    exchange_ews_url: str | None = None
    exchange_ca_file: Path | None = None
    exchange_auth: Literal["basic", "ntlm"] = "basic"
    exchange_impersonation_username: str | None = None
    exchange_impersonation_password_env: str | None = None
    #: EWS streaming notifications (sync/sources/streaming.py) where an ews_url is set
    exchange_streaming: bool = True
    exchange_streaming_timeout_min: int = 29
    outbox: OutboxPolicy = field(default_factory=OutboxPolicy)
    sync: SyncPolicy = field(default_factory=SyncPolicy)
    source: Path | None = None
    push: PushConfig | None = None  # None: no [push] section
    admin: AdminConfig | None = None  # None: no [admin] section, no admin server

    def user_named(self, name: str | None) -> UserConfig | None:
        """The configured user a mailbox address or login name belongs to."""
        if not name:
            return None
        wanted = name.strip().lower()
        for user in self.users:
            if wanted in user.names():
                return user
        return None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, base=path.resolve().parent, source=path)


def parse_config(data: Mapping[str, Any], *, base: Path, source: Path | None = None) -> Config:
    _only(
        data,
        {"store", "google", "exchange", "outbox", "sync", "users", "push", "admin"},
        "the top level",
    )
    store = _table(data, "store")
    _only(store, {"path", "url", "key_env", "lease_s"}, "[store]")
    store_url = _str(store, "url", "[store]")
    if store_url is not None:
        if not store_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("[store] url must be a postgresql:// URL (SQLite takes path)")
        if "path" in store:
            raise ConfigError("[store]: path (SQLite, one node) or url (PostgreSQL), not both")
    lease_s = _float(store, "lease_s", "[store]", default=30.0)
    if lease_s < 1:
        raise ConfigError("[store] lease_s must be at least 1 (seconds)")
    google = _table(data, "google")
    _only(google, {"api_endpoint", "token_uri"}, "[google]")
    exchange = _table(data, "exchange")
    _only(
        exchange,
        {
            "ews_url",
            "ca_file",
            "auth",
            "impersonation_username",
            "impersonation_password_env",
            "streaming",
            "streaming_timeout_min",
        },
        "[exchange]",
    )
    outbox = _table(data, "outbox")
    _only(outbox, {"max_attempts", "backoff_base_s", "backoff_max_s"}, "[outbox]")
    sync = _table(data, "sync")
    _only(
        sync,
        {
            "policy",
            "modified_beats_delete",
            "max_delete_share",
            "window_days",
            "interval_s",
            "verify_interval_s",
        },
        "[sync]",
    )
    policy = _str(sync, "policy", "[sync]") or "exchange-wins"
    if policy not in POLICIES:
        raise ConfigError(f"[sync] policy must be one of {', '.join(POLICIES)}")
    beats = sync.get("modified_beats_delete", False)
    if not isinstance(beats, bool):
        raise ConfigError("[sync] modified_beats_delete must be true or false")
    share = _float(sync, "max_delete_share", "[sync]", default=0.5)
    if share > 1:
        raise ConfigError("[sync] max_delete_share is a share: between 0 and 1")

    users_raw = data.get("users", [])
    if not isinstance(users_raw, list) or not all(isinstance(u, dict) for u in users_raw):
        raise ConfigError("[[users]] must be a list of tables")
    users = tuple(parse_user(u, base=base, index=i) for i, u in enumerate(users_raw))
    seen: dict[str, str] = {}
    for user in users:
        for name in user.names():
            if name in seen:
                raise ConfigError(
                    f"{name!r} names two users ({seen[name]} and {user.mailbox}): one each"
                )
            seen[name] = user.mailbox

    auth = _str(exchange, "auth", "[exchange]") or "basic"
    if auth not in ("basic", "ntlm"):
        raise ConfigError(f"[exchange] auth must be 'basic' or 'ntlm', not {auth!r}")
    streaming = exchange.get("streaming", True)
    if not isinstance(streaming, bool):
        raise ConfigError("[exchange] streaming must be true or false")
    streaming_timeout = _int(exchange, "streaming_timeout_min", "[exchange]", default=29)
    if not 1 <= streaming_timeout <= 30:
        raise ConfigError("[exchange] streaming_timeout_min must be 1 to 30 (minutes)")
    max_attempts = _int(outbox, "max_attempts", "[outbox]", default=8)
    if max_attempts < 1:
        raise ConfigError("[outbox] max_attempts must be at least 1")
    return Config(
        store_path=_path(_str(store, "path", "[store]") or "calsync.db", base),
        store_url=store_url,
        store_key_env=_str(store, "key_env", "[store]") or "CALSYNC_STORE_KEY",
        store_lease_s=lease_s,
        users=users,
        google_api_endpoint=_url(google, "api_endpoint", "[google]"),
        google_token_uri=_url(google, "token_uri", "[google]"),
        exchange_ews_url=_url(exchange, "ews_url", "[exchange]"),
        exchange_ca_file=_opt_path(exchange, "ca_file", "[exchange]", base),
        exchange_auth="ntlm" if auth == "ntlm" else "basic",
        exchange_impersonation_username=_str(exchange, "impersonation_username", "[exchange]"),
        exchange_impersonation_password_env=_str(
            exchange, "impersonation_password_env", "[exchange]"
        ),
        exchange_streaming=streaming,
        exchange_streaming_timeout_min=streaming_timeout,
        sync=SyncPolicy(
            policy=policy,
            modified_beats_delete=beats,
            max_delete_share=share,
            window_days=_int(sync, "window_days", "[sync]", default=365),
            interval_s=_float(sync, "interval_s", "[sync]", default=60.0),
            verify_interval_s=_float(sync, "verify_interval_s", "[sync]", default=3600.0),
        ),
        outbox=OutboxPolicy(
            max_attempts=max_attempts,
            backoff_base_s=_float(outbox, "backoff_base_s", "[outbox]", default=0.5),
            backoff_max_s=_float(outbox, "backoff_max_s", "[outbox]", default=300.0),
        ),
        source=source,
        push=parse_push(_table(data, "push")) if "push" in data else None,
        admin=parse_admin(_table(data, "admin")) if "admin" in data else None,
    )


def parse_push(push: Mapping[str, Any]) -> PushConfig:
    _only(
        push,
        {"webhook_url", "listen_host", "listen_port", "renew_before_s", "channel_ttl_s"},
        "[push]",
    )
    url = _url(push, "webhook_url", "[push]")
    if url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
            raise ConfigError(
                "[push] webhook_url must be https:// (Google calls only HTTPS addresses)"
            )
    port = _int(push, "listen_port", "[push]", default=8089)
    if not 0 <= port <= 65535:
        raise ConfigError("[push] listen_port must be a port number (0: any free port)")
    ttl = push.get("channel_ttl_s")
    return PushConfig(
        webhook_url=url,
        listen_host=_str(push, "listen_host", "[push]") or "127.0.0.1",
        listen_port=port,
        renew_before_s=_float(push, "renew_before_s", "[push]", default=3600.0),
        channel_ttl_s=None
        if ttl is None
        else _float(push, "channel_ttl_s", "[push]", default=0.0) or None,
    )


def parse_admin(admin: Mapping[str, Any]) -> AdminConfig:
    where = "[admin]"
    _only(
        admin,
        {"listen_host", "listen_port", "password_hash", "trusted_header", "per_user_metrics"},
        where,
    )
    port = _int(admin, "listen_port", where, default=8090)
    if not 0 <= port <= 65535:
        raise ConfigError("[admin] listen_port must be a port number (0: any free port)")
    password_hash = _str(admin, "password_hash", where)
    if password_hash is not None and not _is_scrypt_hash(password_hash):
        raise ConfigError(
            "[admin] password_hash must be what `calsync admin hash-password` prints "
            "(scrypt$N$r$p$salt$hash)"
        )
    header = _str(admin, "trusted_header", where)
    if header is not None and not all(c.isalnum() or c == "-" for c in header):
        raise ConfigError("[admin] trusted_header must be a header name (letters, digits, -)")
    per_user = admin.get("per_user_metrics", False)
    if not isinstance(per_user, bool):
        raise ConfigError("[admin] per_user_metrics must be true or false")
    return AdminConfig(
        listen_host=_str(admin, "listen_host", where) or "127.0.0.1",
        listen_port=port,
        password_hash=password_hash,
        trusted_header=header,
        per_user_metrics=per_user,
    )


def _is_scrypt_hash(value: str) -> bool:
    parts = value.split("$")
    return (
        len(parts) == 6
        and parts[0] == "scrypt"
        and all(p.isdigit() for p in parts[1:4])
        and all(parts[4:])
    )


def parse_user(raw: Mapping[str, Any], *, base: Path, index: int) -> UserConfig:
    where = f"[[users]] #{index + 1}"
    _only(
        raw,
        {
            "mailbox",
            "logins",
            "google_calendar",
            "google_token_file",
            "google_service_account_file",
            "google_user",
            "exchange_username",
            "exchange_password_env",
            "direction",
            "policy",
        },
        where,
    )
    mailbox = _str(raw, "mailbox", where)
    if not mailbox or "@" not in mailbox:
        raise ConfigError(f"{where}: mailbox must be an e-mail address")
    where = f"[[users]] {mailbox}"
    logins = raw.get("logins", [])
    if not isinstance(logins, list) or not all(isinstance(x, str) and x for x in logins):
        raise ConfigError(f"{where}: logins must be a list of names")
    token = _opt_path(raw, "google_token_file", where, base)
    account = _opt_path(raw, "google_service_account_file", where, base)
    if token and account:
        raise ConfigError(f"{where}: google_token_file or google_service_account_file, not both")
    user_policy = _str(raw, "policy", where)
    if user_policy is not None and user_policy not in POLICIES:
        raise ConfigError(f"{where}: policy must be one of {', '.join(POLICIES)}")
    direction = _str(raw, "direction", where) or "both"
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    return UserConfig(
        mailbox=mailbox.strip().lower(),
        logins=tuple(logins),
        google_calendar=_str(raw, "google_calendar", where) or "primary",
        google_token_file=token,
        google_service_account_file=account,
        google_user=_str(raw, "google_user", where),
        exchange_username=_str(raw, "exchange_username", where),
        exchange_password_env=_str(raw, "exchange_password_env", where),
        direction=direction,  # narrowed by the DIRECTIONS check above
        policy=user_policy,
    )


# --- small readers: each says which key is wrong -------------------------------------------


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})"
        )


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table")
    return value


def _str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _int(table: Mapping[str, Any], key: str, where: str, *, default: int) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be a whole number")
    return value


def _float(table: Mapping[str, Any], key: str, where: str, *, default: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{where}: {key} must be a number of seconds")
    return float(value)


def _url(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _str(table, key, where)
    if value is not None and not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {key} must be an http:// or https:// URL")
    return value


def _path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _opt_path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Path | None:
    value = _str(table, key, where)
    return _path(value, base) if value else None
