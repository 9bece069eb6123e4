"""dashboards/calsync.json: valid Grafana JSON whose every query names series a scrape of
/metrics exposes, and that charts every family calsync exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sync.config import Config
from sync.ops import metrics
from sync.ops.collector import Scrape, StateCollector
from sync.store import Store

DASHBOARD = Path(__file__).resolve().parents[3] / "dashboards" / "calsync.json"


def exposed(config: Config, store: Store) -> tuple[set[str], set[str]]:
    """(sample names, family names) one scrape shows."""
    text = generate_latest(Scrape(StateCollector(config, store, per_user=True))).decode()  # type: ignore[arg-type]
    families = list(text_string_to_metric_families(text))
    samples = {s.name for f in families for s in f.samples}
    samples |= {f"{f.name}_total" for f in families if f.type == "counter"}  # none counted yet
    # a family whose gauges have no sample yet (lease holders on SQLite) still has its name
    return samples | {f.name for f in families}, {f.name for f in families}


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


def test_every_query_names_a_series_calsync_exposes(config: Config, store: Store) -> None:
    names, _ = exposed(config, store)
    used = {name for query in queries() for name in re.findall(r"\bcalsync_[a-z_]+", query)}
    assert used, "no query names a calsync series"
    assert used <= names, f"not exposed: {sorted(used - names)}"


def test_every_family_is_charted(config: Config, store: Store) -> None:
    _, families = exposed(config, store)
    used = " ".join(queries())
    per_user = {
        "calsync_user_outbox_depth",
        "calsync_user_outbox_quarantined",
        "calsync_user_last_sync_age_seconds",
    }
    missing = [f for f in families - per_user if f not in used]
    assert not missing, f"no panel for {missing}"
    assert metrics.REGISTRY  # the counters' registry is part of the scrape


def test_panels_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        cells = {(box["x"] + dx, box["y"] + dy) for dx in range(box["w"]) for dy in range(box["h"])}
        assert not cells & taken, panel["title"]
        assert box["x"] + box["w"] <= 24
        taken |= cells
