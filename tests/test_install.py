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
