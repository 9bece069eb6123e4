"""DavMail (https://davmail.sourceforge.net), the CalDAV/IMAP <-> Exchange gateway, as an
unmodified third-party EWS client: the Debian package's jar, headless in server mode, in
EWS mode, with only its CalDAV listener (on 127.0.0.1).

It reaches Exchange through mitmdump as its HTTP proxy (`davmail.enableProxy`), as a
desktop client behind an explicit proxy does, so the TLS it checks is mitmproxy's: the
mitmproxy CA goes into a PKCS12 truststore (made with the JRE's own keytool) that the JVM
is started with (`javax.net.ssl.trustStore`). DavMail's own `davmail.ssl.*` settings are
about its listeners and client certificates, not about which server CAs it trusts.

Settings: https://davmail.sourceforge.net/serversetup.html
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.processes import clean_env

#: where the Debian package (davmail / davmail-server) puts DavMail
JAR = Path("/usr/share/davmail/davmail.jar")
_LISTENING = "listening on CALDAV port"
_TRUSTSTORE_PASSWORD = "calsync-e2e"  # protects nothing: the store holds one public CA


def missing() -> str | None:
    """Why DavMail can't run here (None: it can)."""
    if not JAR.exists():
        return f"DavMail is not installed ({JAR} missing; scripts/test installs davmail-server)"
    for tool in ("java", "keytool"):
        if shutil.which(tool) is None:
            return f"DavMail needs {tool}, which is not on PATH"
    return None


def free_port() -> int:
    # DavMail binds the port it is given: ask the kernel for a free one first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DavMail:
    """One DavMail server process; `start()` returns once its CalDAV listener is up."""

    def __init__(self, workdir: Path, *, ews_url: str, proxy_port: int, proxy_ca: Path) -> None:
        self.workdir = workdir
        self.ews_url = ews_url
        self.proxy_port = proxy_port
        self.proxy_ca = proxy_ca
        self.port = free_port()
        self.log_path = workdir / "davmail.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calendar_url(self, user: str) -> str:
        return f"{self.url}/users/{user}/calendar/"

    def settings(self) -> dict[str, str]:
        return {
            "davmail.server": "true",
            "davmail.mode": "EWS",
            "davmail.url": self.ews_url,
            "davmail.caldavPort": str(self.port),
            # only CalDAV: an empty port leaves a listener off
            **{f"davmail.{p}Port": "" for p in ("imap", "ldap", "pop", "smtp")},
            "davmail.allowRemote": "false",
            "davmail.bindAddress": "127.0.0.1",
            "davmail.enableProxy": "true",
            "davmail.useSystemProxies": "false",
            "davmail.proxyHost": "127.0.0.1",
            "davmail.proxyPort": str(self.proxy_port),
            "davmail.noProxyFor": "",
            "davmail.disableUpdateCheck": "true",
            "davmail.ssl.nosecurecaldav": "true",
            "davmail.logFilePath": str(self.workdir / "davmail-file.log"),
            # INFO names each CalDAV request and each EWS failure, never a body
            "log4j.rootLogger": "WARN",
            "log4j.logger.davmail": "INFO",
            "log4j.logger.httpclient.wire": "WARN",
            "log4j.logger.org.apache.http.wire": "WARN",
        }

    def _truststore(self) -> Path:
        store = self.workdir / "davmail-truststore.p12"
        store.unlink(missing_ok=True)
        subprocess.run(
            [
                "keytool",
                "-importcert",
                "-noprompt",
                "-alias",
                "mitmproxy",
                "-file",
                str(self.proxy_ca),
                "-keystore",
                str(store),
                "-storetype",
                "PKCS12",
                "-storepass",
                _TRUSTSTORE_PASSWORD,
            ],
            check=True,
            capture_output=True,
            timeout=60,
            env=clean_env(),
        )
        return store

    def start(self, timeout: float = 60.0) -> DavMail:
        assert self.process is None, "already running"
        store = self._truststore()
        properties = self.workdir / "davmail.properties"
        properties.write_text("".join(f"{k}={v}\n" for k, v in self.settings().items()))
        command = [
            "java",
            f"-Djavax.net.ssl.trustStore={store}",
            "-Djavax.net.ssl.trustStoreType=PKCS12",
            f"-Djavax.net.ssl.trustStorePassword={_TRUSTSTORE_PASSWORD}",
            "-Djava.awt.headless=true",
            "-XX:TieredStopAtLevel=1",  # a short-lived test server: start fast, not peak speed
            "-jar", str(JAR), "-server", str(properties),
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _LISTENING in self.log():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"DavMail did not start listening:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
