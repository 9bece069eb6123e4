"""/healthz and /readyz, for load balancers and systemd.

- /healthz: the process is alive and serving (200 whenever it answers).
- /readyz: 200 when every check passes, 503 with the failing ones otherwise:
  - store: the state store answers a query;
  - worker: the outbox is draining: no entry of a user who is not paused has been due for
    more than `stuck_after_s` seconds (the worker takes a due entry within a second);
  - google / exchange (when users are configured, and for Exchange an ews_url): the side
    answered within `answered_within_s`, or calsync has not failed to reach it since it
    last answered (an idle node that asked nothing is ready).

Bodies are JSON: {"status": ..., "checks": {name: {"ok": bool, "detail": str}}}; details
say counts and seconds, never a mailbox, an event or an error's text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync.config import Config
from sync.ops import metrics, pause
from sync.store import Store

#: an entry due this long and not taken: the worker is stuck
STUCK_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str


class Health:
    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        stuck_after_s: float = STUCK_AFTER_S,
        answered_within_s: float | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.started = clock()
        self.stuck_after_s = stuck_after_s
        #: a poll asks both sides every [sync] interval_s: three missed polls is not ready
        self.answered_within_s = answered_within_s or max(300.0, 3 * config.sync.interval_s)

    def alive(self) -> tuple[int, dict[str, Any]]:
        return 200, {"status": "alive", "uptime_s": round(self.clock() - self.started, 1)}

    def ready(self) -> tuple[int, dict[str, Any]]:
        now = self.clock()
        checks: dict[str, Check] = {"store": self._store()}
        if checks["store"].ok:
            checks["worker"] = self._worker(now)
        if self.config.users:
            checks["google"] = self._answered("google", now)
            if self.config.exchange_ews_url:
                checks["exchange"] = self._answered("exchange", now)
        ok = all(c.ok for c in checks.values())
        body = {
            "status": "ready" if ok else "not ready",
            "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
        }
        return (200 if ok else 503), body

    def _store(self) -> Check:
        try:
            self.store.next_due()
        except Exception as exc:
            return Check(False, f"the store did not answer ({type(exc).__name__})")
        return Check(True, "answers")

    def _worker(self, now: float) -> Check:
        due = self.store.next_due()
        limit = now - self.stuck_after_s
        if due is None or due > limit:
            return Check(True, "draining")
        stuck = [
            e
            for e in self.store.pending()
            if e.next_attempt_at <= limit
            and not pause.is_paused(e.mailbox)
            and (e.claim_until is None or e.claim_until <= now)  # no live claim: nobody at it
        ]
        if not stuck:
            return Check(True, "draining (what is due belongs to paused users)")
        oldest = now - min(e.next_attempt_at for e in stuck)
        return Check(
            False,
            f"{len(stuck)} entries due for more than {self.stuck_after_s:.0f} s "
            f"(the oldest {oldest:.0f} s)",
        )

    def _answered(self, side: str, now: float) -> Check:
        answers = metrics.ANSWERS[side]
        answered, unreachable = answers.answered, answers.unreachable
        if answered is not None and now - answered <= self.answered_within_s:
            return Check(True, f"answered {now - answered:.0f} s ago")
        if unreachable is None or (answered is not None and answered >= unreachable):
            return Check(True, "not asked since it last answered" if answered else "not asked yet")
        since = f"{now - answered:.0f} s ago" if answered is not None else "never"
        return Check(False, f"unreachable {now - unreachable:.0f} s ago; last answered {since}")
