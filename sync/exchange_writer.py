"""Writes to Exchange and its change feed, through exchangelib, for the two-way job.

- Never an invitation or cancellation: SendToNone on every create, update and delete.
- Updates are conditioned on the ChangeKey calsync last saw (NeverOverwrite): a stale one
  raises `ExchangeConflict`, and the job re-reads and re-decides.
- `changes()` is SyncFolderItems on the calendar, resumed from the stored SyncState.
https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-synchronize-items-by-using-ews-in-exchange
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sync.exchange import ExchangeError, ExchangeMailbox, _exchange_error


class ExchangeConflict(ExchangeError):
    """ErrorIrresolvableConflict: the item changed since calsync read it."""

    def __init__(self) -> None:
        super().__init__("the Exchange item changed since it was read", retryable=True)


@dataclass(frozen=True, slots=True)
class ItemChange:
    kind: str  # "create", "update", "delete"
    item_id: str
    change_key: str | None
    item: Any = None  # the CalendarItem for create/update


def _differs(a: Any, b: Any) -> bool:
    """exchangelib models compare by hashing their fields, which fails on list fields."""
    try:
        return bool(a != b)
    except TypeError:
        return repr(a) != repr(b)


class ExchangeWriter(ExchangeMailbox):
    def create(self, values: dict[str, Any]) -> tuple[str, str]:
        from exchangelib.items import SEND_TO_NONE, CalendarItem

        writable = {k: v for k, v in values.items() if k not in _READ_ONLY}
        try:
            item = CalendarItem(account=self.account, folder=self.account.calendar, **writable)
            item.save(send_meeting_invitations=SEND_TO_NONE)
        except Exception as exc:
            raise _exchange_error(exc) from None
        return str(item.id), str(item.changekey)

    def update(self, item: Any, values: dict[str, Any]) -> tuple[str, str] | None:
        """Set the fields of `values` that differ on `item` and save them, conditioned on
        the item's ChangeKey. None when nothing differed."""
        from exchangelib.errors import ErrorIrresolvableConflict
        from exchangelib.items import NEVER_OVERWRITE, SEND_TO_NONE

        changed = [
            name
            for name, value in values.items()
            if name not in _READ_ONLY and _differs(getattr(item, name, None), value)
        ]
        if not changed:
            return None
        for name in changed:
            setattr(item, name, values[name])
        try:
            item.save(
                update_fields=changed,
                conflict_resolution=NEVER_OVERWRITE,
                send_meeting_invitations=SEND_TO_NONE,
            )
        except ErrorIrresolvableConflict:
            raise ExchangeConflict() from None
        except Exception as exc:
            raise _exchange_error(exc) from None
        return str(item.id), str(item.changekey)

    def delete(self, item_id: str) -> None:
        from exchangelib.errors import ErrorItemNotFound
        from exchangelib.items import SEND_TO_NONE

        item = self.calendar_item(item_id)
        if item is None:
            return
        try:
            item.delete(send_meeting_cancellations=SEND_TO_NONE)
        except ErrorItemNotFound:
            return
        except Exception as exc:
            raise _exchange_error(exc) from None

    def changes(
        self, sync_state: str | None, ignore: Iterable[str] = ()
    ) -> tuple[list[ItemChange], str | None]:
        """Everything that changed in the calendar since `sync_state` (all of it when
        None), and the state to resume from."""
        out: list[ItemChange] = []
        try:
            # resolving the calendar is a GetFolder: its failures are Exchange's too
            folder = self.account.calendar
            # exchangelib resumes from the folder's cached item_sync_state when given None:
            # a full read must start from nothing, whatever an earlier call on it left
            folder.item_sync_state = sync_state
            for kind, value in folder.sync_items(
                sync_state=sync_state, ignore=[(i, None) for i in ignore] or None
            ):
                if kind in ("create", "update"):
                    out.append(ItemChange(kind, str(value.id), value.changekey, value))
                elif kind == "delete":
                    item_id = value if isinstance(value, str) else getattr(value, "id", value)
                    out.append(ItemChange("delete", str(item_id), None))
        except Exception as exc:
            raise _exchange_error(exc) from None
        return out, folder.item_sync_state

    def all_items(self) -> list[Any]:
        """Every calendar item (masters, not occurrences), for a full comparison."""
        try:
            return list(self.account.calendar.all())
        except Exception as exc:
            raise _exchange_error(exc) from None


#: to_ews keys Exchange does not let a client write.
_READ_ONLY = frozenset({"is_cancelled", "uid"})
