"""Compatibility: Exchange now lives in sync/backends/exchange.py (the client, reads and
writes) and sync/backends/base.py (its interface and errors). Removed once every caller
imports those."""

from sync.backends.base import ExchangeConflict, ExchangeError
from sync.backends.exchange import ExchangeMailbox

__all__ = ["ExchangeConflict", "ExchangeError", "ExchangeMailbox"]
