"""Suite-wide settings: hypothesis profiles (deterministic on CI), the EWS stand-in's strict
mode (every response it writes checked against Exchange's schema), and the seed of the
test order (pytest-randomly) repeated under a failed run; threads a run leaves behind named
at its end, and an interpreter that cannot exit ended with their stacks."""

from __future__ import annotations

import faulthandler
import gc
import os
import resource
import sys
import threading
import traceback
from collections.abc import Iterator

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

#: descriptors this run may hold (the soft limit raised up to the hard one): a whole run
#: holds over a thousand at its end (clients and stores tests leave to the collector, the
#: stand-ins' side of their kept-alive connections), past a 1024 soft limit, where an
#: accept() or open() that fails may leave a client waiting for an answer
NOFILE = 65536
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = NOFILE if _hard == resource.RLIM_INFINITY else min(NOFILE, _hard)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

# In the environment, not a fixture: stand-ins that tests start as subprocesses (the demo,
# `calsync emulate ews`) inherit it. A response that fails the schema is then answered
# ErrorInternalServerError, which fails the test that caused it.
os.environ.setdefault("CALSYNC_EWS_STRICT_RESPONSES", "1")


@pytest.fixture(autouse=True)
def heap_unfrozen() -> Iterator[None]:
    """The addon and a warmed-up worker freeze the heap (sync/ops/heap.py); in a test's
    process never past the test, or what it made would never be collected."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


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


#: seconds the interpreter may take to exit once the run has ended: it joins every
#: non-daemon thread a test left running, and one that never ends would hold CI to its own
#: limit with the summary unprinted (stop 21's CI run ended that way, its log cut at
#: pytest's first 8 KiB of output). Past it, every thread's stack and exit status 1.
EXIT_LIMIT_S = 120


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    left = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    stream = sys.__stderr__
    if stream is not None and os.path.isdir("/proc/self/fd"):
        print(
            f"calsync tests: {len(os.listdir('/proc/self/fd'))} descriptors open at the end",
            file=stream,
        )
    if left and stream is not None:
        frames = sys._current_frames()
        print(
            f"calsync tests: {len(left)} non-daemon thread(s) still running at the end;"
            " the interpreter waits for them to exit:",
            file=stream,
        )
        for thread in left:
            frame = frames.get(thread.ident or 0)
            stack = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else ""
            print(f"--- {thread.name}\n{stack}", file=stream)
    for handle in (sys.stdout, sys.stderr, stream):
        if handle is not None:
            handle.flush()
    if stream is not None:
        faulthandler.dump_traceback_later(EXIT_LIMIT_S, exit=True, file=stream)
