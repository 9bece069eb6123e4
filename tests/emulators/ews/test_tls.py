"""`--tls`: HTTPS with a generated CA and server certificate that exchangelib (through
requests) verifies, both in-process (an HTTP adapter, as exchangelib's documentation
shows with BaseProtocol.HTTP_ADAPTER_CLS) and in a subprocess (REQUESTS_CA_BUNDLE)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.adapters
from exchangelib.errors import TransportError
from exchangelib.protocol import BaseProtocol

from emulators.ews import EwsServer, start_server
from tests.emulators.ews.conftest import USERS, make_account

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[EwsServer]:
    srv = start_server(users=USERS, tls_dir=tmp_path / "tls")
    try:
        yield srv
    finally:
        srv.stop()


def _adapter_trusting(ca: Path) -> type[requests.adapters.HTTPAdapter]:
    # exchangelib's documented hook is an adapter class; overriding cert_verify (its docs'
    # example) no longer reaches the TLS context since requests 2.32 picks the connection
    # pool from `verify`, so pass the CA as `verify` itself.
    class TrustStandIn(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:
            kwargs["verify"] = str(ca)
            return super().send(request, **kwargs)

    return TrustStandIn


def test_exchangelib_talks_https_when_it_trusts_the_ca(tls_server: EwsServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert tls_server.ca_path is not None and tls_server.ca_path.exists()
    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", _adapter_trusting(tls_server.ca_path))
    account = make_account(tls_server.url, "alice@example.com", USERS["alice@example.com"])
    assert account.calendar.folder_class == "IPF.Appointment"


def test_an_untrusted_certificate_is_refused(tls_server: EwsServer) -> None:
    # Without the CA, verification fails: the certificate is not accidentally public.
    account = make_account(tls_server.url, "alice@example.com", USERS["alice@example.com"])
    with pytest.raises(TransportError):
        account.calendar  # noqa: B018


def test_a_subprocess_client_trusts_it_through_requests_ca_bundle(tls_server: EwsServer) -> None:
    script = textwrap.dedent(f"""
        from exchangelib import BASIC, DELEGATE, Account, Configuration, Credentials
        from exchangelib.protocol import FailFast
        from exchangelib.version import EXCHANGE_2016, Version
        config = Configuration(service_endpoint={tls_server.url!r},
                               credentials=Credentials("alice@example.com", "alice-secret"),
                               auth_type=BASIC, version=Version(build=EXCHANGE_2016),
                               retry_policy=FailFast())
        account = Account("alice@example.com", config=config, autodiscover=False,
                          access_type=DELEGATE)
        print(account.calendar.name)
    """)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": str(tls_server.ca_path),
           "NO_PROXY": "127.0.0.1,localhost", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Calendar"
