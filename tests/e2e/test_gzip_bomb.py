"""Issue 10 case 3: a compressed EWS body that inflates a thousandfold costs the proxy
nothing it would not cost bare mitmdump.

mitmdump in reverse mode in front of a tiny upstream that answers 200 with a valid
CreateItem response (tests/e2e/hostile.py), once bare and once with the addon. A POST
whose gzip body inflates to 256 MiB (a CreateItem in the calendar whose subject never
ends: it may matter to calsync, so only the cap on decoded bytes stops the reading), and
a CreateItem answered with such a gzip body. Targets: the answer with the addon within
0.5 s of bare mitmdump's; no probe on another connection (every 50 ms, until a second
after the answer) over 1 s; mitmdump's memory growth (VmRSS, and VmHWM over the VmRSS
before) at most 64 MB.

256 MiB, not the issue's 1 GiB (bench/hostile.py measures that): the body is decoded on the
event loop today, so a quarter still stalls every flow for seconds and grows the process
by 256 MB, four times the target.
"""

from __future__ import annotations

from pathlib import Path

from emulators.google.server import GoogleCalendarServer
from tests.e2e.hostile import (
    REQUEST_PREFIX,
    RESPONSE_PREFIX,
    MiB,
    bare_and_addon,
    gzip_bomb,
    verdicts,
)

SIZE = 256 * MiB
#: probes go on this long after the answer: the addon's work off the request path (bounded
#: decoding, 32 MiB at most) is done well within it
SETTLE_S = 0.5


def test_a_gzip_bomb_costs_no_more_than_through_bare_mitmdump(
    google: GoogleCalendarServer, tmp_path: Path
) -> None:
    bombs = {
        "request": gzip_bomb(REQUEST_PREFIX, SIZE),
        "response": gzip_bomb(RESPONSE_PREFIX, SIZE),
    }
    figures = bare_and_addon(tmp_path, google, bombs, settle_s=SETTLE_S)
    lines, met_all = [], True
    for side, (bare, addon) in figures.items():
        lines += [bare.line(f"{side} bomb, bare"), addon.line(f"{side} bomb, addon")]
        for target, met in verdicts(bare, addon):
            lines.append(f"{'met   ' if met else 'MISSED'} {side} bomb: {target}")
            met_all &= met
    report = "\n".join(lines)
    print(report)
    assert met_all, report
