"""The whole chain, as deployed: exchangelib -> mitmdump (with the addon, TLS both ways)
-> the EWS stand-in over HTTPS; the addon's worker -> the Google stand-in.

Fixtures start every process and server and always stop them (finalizers run on failure
too); the mitmdump log is printed when a test fails. `chain` is the same chain once for the
session, shared by the suites whose client is slow to start (DavMail's JVM, Node): each of
their tests makes events of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from exchangelib import Account
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsServer, start_server
from emulators.google.server import GoogleCalendarServer
from tests.addon.conftest import token_file
from tests.e2e import traffic
from tests.e2e.clients import Route, account
from tests.e2e.processes import Mitmdump
from tests.e2e.steps import Google

PASSWORD = "secret"
USERS = ("alice@example.com", "bob@example.com")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests and httplib2 follow HTTP(S)_PROXY: only the routes set here may proxy.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@contextmanager
def ews_stand_in(directory: Path) -> Iterator[EwsServer]:
    server = start_server(users={u: PASSWORD for u in USERS}, tls_dir=directory / "ews-tls")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ews(tmp_path: Path) -> Iterator[EwsServer]:
    with ews_stand_in(tmp_path) as server:
        yield server


@pytest.fixture
def google() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(port=0, users=USERS) as server:
        yield server


def write_config(
    directory: Path, google: GoogleCalendarServer, ews: EwsServer, *, streaming: bool = False
) -> Path:
    """calsync.toml for the stand-ins. Retries come quickly and give up only after a
    minute, so an outage of a few seconds is waited out, not quarantined. EWS streaming
    notifications are off unless asked for: they run the two-way job, and what these tests
    wait for must come by the proxy's own path."""
    tokens = directory / "tokens"
    tokens.mkdir(exist_ok=True)
    lines = [
        "[store]",
        f'path = "{directory / "calsync.db"}"',
        "[google]",
        f'api_endpoint = "{google.api_endpoint}"',
        f'token_uri = "{google.token_uri}"',
        "[exchange]",
        f'ews_url = "{ews.url}"',
        f'ca_file = "{ews.ca_path}"',
        f"streaming = {str(streaming).lower()}",
        "[outbox]",
        "max_attempts = 200",
        "backoff_base_s = 0.1",
        "backoff_max_s = 0.4",
    ]
    for user in USERS:
        lines += [
            "[[users]]",
            f'mailbox = "{user}"',
            f'google_token_file = "{token_file(tokens, google, user)}"',
            f'exchange_password_env = "{password_env(user)}"',
        ]
    path = directory / "calsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def password_env(user: str) -> str:
    return f"CALSYNC_E2E_{user.split('@')[0].upper()}_PASSWORD"


@pytest.fixture
def config(tmp_path: Path, google: GoogleCalendarServer, ews: EwsServer) -> Path:
    return write_config(tmp_path, google, ews)


def mitmdump(directory: Path, config: Path, ews: EwsServer, **options: str) -> Mitmdump:
    """mitmdump with the addon on `config`, trusting the EWS stand-in upstream (not started)."""
    return Mitmdump(
        directory,
        options={
            "calsync_config": str(config),
            "ssl_verify_upstream_trusted_ca": str(ews.ca_path),
            **options,
        },
        env={password_env(u): PASSWORD for u in USERS},
    )


@pytest.fixture
def proxy(
    tmp_path: Path, config: Path, ews: EwsServer, request: pytest.FixtureRequest
) -> Iterator[Mitmdump]:
    process = mitmdump(tmp_path, config, ews)
    try:
        yield process.start()
    finally:
        process.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(process.logs())


@dataclass(frozen=True)
class Chain:
    """The stand-ins and mitmdump with the addon, for the whole session. `flows` is the
    mitmproxy flow file mitmdump writes (`save_stream_file`): what the client sent and
    Exchange answered, read back with `tests.e2e.traffic`. The two-way job is off: what
    reaches Google came by the proxy's own path, and a test that waits for it cannot be
    passed by a job run that happened to fall inside its wait."""

    workdir: Path
    ews: EwsServer
    google: GoogleCalendarServer
    config: Path
    proxy: Mitmdump

    @property
    def flows(self) -> Path:
        return self.workdir / "flows.mitm"


@pytest.fixture(scope="session")
def chain(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Chain]:
    workdir = tmp_path_factory.mktemp("chain")
    failed_before = request.session.testsfailed
    with ews_stand_in(workdir) as ews, GoogleCalendarServer(port=0, users=USERS) as google:
        config = write_config(workdir, google, ews)
        process = mitmdump(
            workdir,
            config,
            ews,
            save_stream_file=str(workdir / "flows.mitm"),
            calsync_sync_interval="0",
        )
        try:
            yield Chain(workdir, ews, google, config, process.start())
        finally:
            process.stop()
            if request.session.testsfailed > failed_before:
                print(process.logs())


@pytest.fixture
def in_google(chain: Chain) -> Google:
    """Alice's Google calendar in the chain's stand-in, as the client steps read it."""
    return Google(chain.google.api_endpoint)


@pytest.fixture
def ews_operations(chain: Chain) -> Iterator[None]:
    """Prints the EWS operations the test made its client send (shown when it fails)."""
    start = len(traffic.exchanges(chain.flows))
    yield
    print("EWS operations the client sent:", *traffic.since(chain.flows, start), sep="\n  ")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture
def route(ews: EwsServer, proxy: Mitmdump, monkeypatch: pytest.MonkeyPatch) -> Route:
    assert ews.ca_path is not None
    route = Route(direct_ca=ews.ca_path, proxy_url=proxy.proxy_url, proxy_ca=proxy.ca_path)
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", route.adapter())
    return route


@pytest.fixture
def alice(ews: EwsServer, route: Route) -> Iterator[Account]:
    client = account(ews.url, "alice@example.com", PASSWORD)
    try:
        yield client
    finally:
        client.protocol.close()
