"""Compatibility: the Exchange writer is now part of sync/backends/exchange.py
(`ExchangeMailbox` reads and writes). Removed once every caller imports that."""

from sync.backends.base import ExchangeConflict, ItemChange
from sync.backends.base import differs as _differs
from sync.backends.exchange import ExchangeMailbox

ExchangeWriter = ExchangeMailbox

__all__ = ["ExchangeConflict", "ExchangeWriter", "ItemChange", "_differs"]
