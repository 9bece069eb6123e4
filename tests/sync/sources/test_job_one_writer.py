"""One writer (STYLE.md, convention 13): the sources of change (sync/sources/*.py) hand the
reconciler notices and write nothing themselves. Every call is read with `ast`: none of a
backend's write methods on a Google or Exchange client, and nothing of the reconciler's but
its notice entry points (the pair methods behind them are its own business)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted((ROOT / "sync" / "sources").glob("*.py"))

#: the write methods of GoogleBackend and ExchangeBackend (sync/backends/base.py)
BACKEND_WRITES = frozenset(
    {
        "insert",
        "insert_many",
        "patch",
        "patch_many",
        "delete",
        "delete_occurrence",
        "create",
        "update",
    }
)
#: what a source may call on the reconciler: a run's bounds, and its notices
RECONCILER_ENTRY_POINTS = frozenset(
    {"begin", "finish", "plan", "apply", "apply_many", "apply_series"}
)


def writes(tree: ast.AST) -> list[str]:
    """`line: call` for each call in `tree` that writes around the reconciler."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = ast.unparse(node.func.value)
        method = node.func.attr
        last = receiver.rsplit(".", 1)[-1].lower()
        backend = "google" in last or "exchange" in last
        if (backend and method in BACKEND_WRITES) or (
            last == "reconciler" and method not in RECONCILER_ENTRY_POINTS
        ):
            found.append(f"{node.lineno}: {receiver}.{method}(...)")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_a_source_writes_only_through_the_reconciler(path: Path) -> None:
    found = writes(ast.parse(path.read_text(), filename=str(path)))
    assert not found, f"{path.name} writes around the reconciler:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("code", "caught"),
    [
        # the two-way job as it was (0de663d): pair methods, a batched insert
        ("self.reconciler.reconcile_pair(user, google, exchange, item_id, run)", True),
        ("self.reconciler.settle_deleted(user, google, exchange, m, None, e, run)", True),
        ("answers = google.insert_many(bodies, progress=advance)", True),
        ("self.client_cache.exchange(user).update(item, values)", True),
        ("exchange.delete(item_id)", True),
        # what a source may do
        ("self.reconciler.apply(notice, run, user=u, google=g, exchange=e)", False),
        ("google.get(event_id)", False),
        ("exchange.missing(ids)", False),
        ("self._roles.update(folders)", False),  # a dict, no backend
        ("self.store.save_sync_state(mailbox, token=t)", False),
    ],
)
def test_the_check_can_fail(code: str, caught: bool) -> None:
    assert bool(writes(ast.parse(code))) is caught
