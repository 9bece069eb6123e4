"""The project is installed, not just on sys.path: `mitmdump -s addon/calsync.py` puts only
addon/ on sys.path, so the packages must import from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_packages_import_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import ews_parser, mapping, sync, emulators"],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_calsync_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("calsync")
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: calsync" in result.stdout


def test_the_tests_run_on_the_http_stack_users_install() -> None:
    """The test extra must not swap a library the product runs on: caldav 2 brings
    urllib3-future, which installs itself as the `urllib3` package (exchangelib would run on
    it in tests, the demo and the benches, with threads of its own, and no user would)."""
    import importlib.metadata

    import urllib3

    installed = {dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()}
    assert "urllib3-future" not in installed
    assert urllib3.__version__ == importlib.metadata.version("urllib3")
