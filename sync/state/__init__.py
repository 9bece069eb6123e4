"""calsync's state: interfaces and value types (base.py), the SQLite implementation
(sqlite.py, one node) and the PostgreSQL one (postgres.py, several nodes sharing it).
Every SQL statement of calsync lives in this package; `open_state` picks the backend the
config names."""

from __future__ import annotations

import os
from collections.abc import Mapping

from sync.config import Config
from sync.state.base import State, StoreError


def open_state(config: Config, *, environ: Mapping[str, str] = os.environ) -> State:
    """PostgreSQL for `[store] url` (the sealing key from the variable `[store] key_env`
    names: a key file beside one node's database would not be the other nodes'), else
    SQLite at `[store] path`. Users an older calsync paused in a file beside `[store]
    path` are paused in the store, once (sync/ops/pause.py)."""
    from sync.ops import pause

    state: State
    if config.store_url is None:
        from sync.state.sqlite import SqliteState

        state = SqliteState(config.store_path)
    else:
        key = environ.get(config.store_key_env, "").strip()
        if not key:
            raise StoreError(
                f"[store] url names a store nodes share: set {config.store_key_env} to its"
                " sealing key, the same on every node ([store] key_env names another variable)"
            )
        from sync.state.postgres import PostgresState  # psycopg only where it is used

        state = PostgresState(config.store_url, key=key.encode(), stall_s=config.store_lease_s)
    try:
        pause.import_file(state.pauses, pause.file_of(config))
    except BaseException:
        state.close()
        raise
    return state
