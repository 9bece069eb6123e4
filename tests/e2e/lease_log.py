"""A mitmproxy script that tests/e2e/test_nodes.py loads beside the addon: it writes the
node's lease lines (sync/sources/push.py `Leasing`: "lease on U taken by H: fence N",
"lease on U, fence N: run began", "... run ended[, the lease lost]") to the file the
variable CALSYNC_E2E_LEASE_LOG names, each with when it was logged (time.time(), the same
clock on every node of one machine) and the process that logged it.

The run lines are debug lines, which mitmdump does not show: a history of every run of
every user would drown its output. Lines are flushed as they are written, so a node
killed with SIGKILL leaves all of its own.
"""

from __future__ import annotations

import logging
import os
from typing import Any


class LeaseLines(logging.Handler):
    def __init__(self, path: str) -> None:
        super().__init__(logging.DEBUG)
        self.file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - the process's

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("lease on "):
            self.file.write(f"{record.created:.6f} {record.process} {message}\n")


_logger = logging.getLogger("calsync.push")
_logger.setLevel(logging.DEBUG)  # mitmdump's own handler still shows info and up only
_logger.addHandler(LeaseLines(os.environ["CALSYNC_E2E_LEASE_LOG"]))

addons: list[Any] = []
