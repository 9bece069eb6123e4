"""Suite-wide settings: hypothesis profiles (deterministic on CI), the EWS stand-in's strict
mode (every response it writes checked against Exchange's schema), and the seed of the
test order (pytest-randomly) repeated under a failed run."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Random outside CI, whatever else is set: hypothesis loads its own derandomized "ci" profile
# when a CI variable is merely present (CI=, GITHUB_ACTIONS=true), and a profile registered
# without a parent inherits from the one loaded.
settings.register_profile(
    "dev",
    parent=settings.get_profile("default"),
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# In the environment, not a fixture: stand-ins that tests start as subprocesses (the demo,
# `calsync emulate ews`) inherit it. A response that fails the schema is then answered
# ErrorInternalServerError, which fails the test that caused it.
os.environ.setdefault("CALSYNC_EWS_STRICT_RESPONSES", "1")


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """pytest-randomly shuffles every run and names its seed in the header, which `-q`
    hides and a long run scrolls away: a failed run names it again at the end."""
    shuffled = config.pluginmanager.hasplugin("randomly") and config.getoption(
        "randomly_reorganize", False
    )
    seed = config.getoption("randomly_seed", None)
    if exitstatus == 0 or not shuffled or not isinstance(seed, int):
        return
    terminalreporter.write_line(
        f"tests ran shuffled with --randomly-seed={seed}: add it to the same pytest (or"
        " scripts/test) arguments to run them in this order again"
    )
