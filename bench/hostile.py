"""A gzip bomb through mitmdump, bare and with the calsync addon (issue 10 case 3).

    .venv/bin/python bench/hostile.py [--mib 1024] [--side request|response|both]

An EWS POST whose `Content-Encoding: gzip` body (about 1 MB) inflates to `--mib` MiB: a
CreateItem of a calendar item whose subject never ends, so that the request may matter to
calsync and only the cap on decoded bytes (`calsync_max_body`) stops the reading. Then the
other side: a small CreateItem answered 200 with such a gzip body (a CreateItem response
whose item never ends). Both through mitmdump in reverse mode in front of a tiny upstream
that answers 200 with a valid CreateItem response, one after the other, once through bare
mitmdump and once through mitmdump with the addon (alice configured, the Google stand-in in
this process, the two-way job off).

Measured, per proxy (tests/e2e/hostile.py, which the test tests/e2e/test_gzip_bomb.py
runs at 256 MiB):
- answer: from sending the bomb to having read the whole answer;
- worst probe: small requests (a GET, an EWS GetFolder of the inbox, in turn), each on a
  connection of its own, every 50 ms from before the bomb until a second after its answer;
- memory: mitmdump's VmRSS after minus VmRSS before (what stays), and VmHWM after minus
  VmRSS before (the most the bomb made it hold; VmHWM is reset before each bomb), from
  /proc/PID/status.

Targets: answer with the addon at most bare's + 0.5 s; worst probe under 1 s; both memory
growths at most 64 MB. Figures vary with the machine and what else runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulators.google.server import GoogleCalendarServer  # noqa: E402
from tests.e2e.hostile import (  # noqa: E402
    REQUEST_PREFIX,
    RESPONSE_PREFIX,
    MiB,
    bare_and_addon,
    gzip_bomb,
    verdicts,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="decoded size of the bomb")
    parser.add_argument("--side", choices=("request", "response", "both"), default="both")
    args = parser.parse_args()
    sides = ("request", "response") if args.side == "both" else (args.side,)
    started = time.monotonic()
    bombs = {
        side: gzip_bomb(REQUEST_PREFIX if side == "request" else RESPONSE_PREFIX, args.mib * MiB)
        for side in sides
    }
    print(
        f"bombs of {args.mib} MiB decoded: "
        + ", ".join(f"{side} {len(bomb) / 1e6:.2f} MB of gzip" for side, bomb in bombs.items())
        + f" (built in {time.monotonic() - started:.1f} s)"
    )
    missed = 0
    with (
        tempfile.TemporaryDirectory(prefix="calsync-bench-hostile-") as tmp,
        GoogleCalendarServer(port=0, users=["alice@example.com"]) as google,
    ):
        figures = bare_and_addon(Path(tmp), google, bombs, settle_s=1.0)
    for side, (bare, addon) in figures.items():
        print(f"\n{side} bomb")
        print("  " + bare.line("bare mitmdump"))
        print("  " + addon.line("mitmdump + calsync"))
        for target, met in verdicts(bare, addon):
            print(f"  {'met   ' if met else 'MISSED'} {target}")
            missed += not met
    print(f"\n{'all targets met' if not missed else f'{missed} target(s) missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
