"""A real `mitmdump -s addon/calsync.py` process, as an administrator runs it.

Regular proxy mode (or the `mode` option, e.g. `reverse:URL`) on 127.0.0.1 with an
ephemeral port (read back from mitmdump's own "listening at" line), a fresh mitmproxy CA
in its own confdir, trusting the EWS stand-in's CA upstream. Its environment is built
here, not inherited: no HTTP(S)_PROXY, so neither the proxy nor the addon's own
write-backs can loop through a proxy.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "calsync.py"
#: the mitmdump of the interpreter running the tests (the project is installed there)
MITMDUMP = Path(sys.executable).parent / "mitmdump"

#: "HTTP(S) proxy listening at ..." (regular mode), "reverse proxy to URL listening at ..."
_LISTENING = re.compile(r"proxy (?:to \S+ )?listening at 127\.0\.0\.1:(\d+)")
#: mitmdump logs a script that fails to load before it listens (and then exits).
_FAILED = ("error in script", "Error logged during startup")
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any proxy settings, loopback never proxied."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in _PROXY_VARIABLES and not k.startswith("PYTEST_")
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class Mitmdump:
    """One mitmdump process; `start()` returns once it listens, `stop()`/`kill()` end it.

    Its output goes to a file (a pipe nobody reads would block it) that `log()` returns,
    for failure messages.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        addon: bool = True,
        options: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "mitmdump",
    ) -> None:
        self.workdir = workdir
        self.confdir = workdir / "mitmproxy"
        self.addon = addon
        self.options = dict(options or {})
        self.env = dict(env or {})
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.runs = 0
        self._log_path: Path | None = None

    @property
    def proxy_url(self) -> str:
        assert self.port is not None, "not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        """The mitmproxy CA clients must trust (generated on first start)."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def command(self) -> list[str]:
        args = [str(MITMDUMP), "--listen-host", "127.0.0.1", "--listen-port", "0"]
        if self.addon:
            args += ["-s", str(ADDON)]
        options = {"confdir": str(self.confdir), "flow_detail": "0", **self.options}
        for key, value in options.items():
            args += ["--set", f"{key}={value}"]
        return args

    def start(self, timeout: float = 30.0) -> Mitmdump:
        assert self.process is None, "already running"
        self.runs += 1
        self._log_path = self.workdir / f"{self.name}-{self.runs}.log"
        log_file = self._log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=clean_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()  # the child has its own descriptor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if any(sign in text for sign in _FAILED):
                break
            match = _LISTENING.search(text)
            if match:
                self.port = int(match.group(1))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start listening:\n{self.log()[-3000:]}")

    def log(self) -> str:
        """The output of the current (or last) run."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def logs(self, *, tail: int = 6000, without: tuple[str, ...] = ()) -> str:
        """The output of every run, each under a header: its last `tail` characters,
        leaving out the lines that contain any of `without`."""
        parts = []
        for run in range(1, self.runs + 1):
            path = self.workdir / f"{self.name}-{run}.log"
            if path.exists():
                text = path.read_text(errors="replace")
                if without:
                    lines = text.splitlines()
                    text = "\n".join(ln for ln in lines if not any(w in ln for w in without))
                parts.append(f"--- {path.name} ---\n{text[-tail:]}")
        return "\n".join(parts)

    def kill(self) -> None:
        """SIGKILL: no hook runs, nothing is flushed; what is on disk is what survives."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (mitmdump shuts down its addons), SIGKILL if it does not go in 10 s."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process, self.port = self.process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie is gone for our purposes
