"""Exchange through exchangelib, for one user: full reads of calendar items (and, for the
two-way sync, writes).

The addon reads from Exchange only when the request it saw cannot tell the whole story
(a restart lost the request, an occurrence was edited, an item went to a folder never
seen). Like the Google side, it never goes through a proxy: requests would honour
HTTP(S)_PROXY and loop our own reads back through mitmproxy.
exchangelib is imported lazily (start-up time of mitmdump).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ews_parser.errors import CalsyncError
from sync.config import Config, UserConfig

log = logging.getLogger("calsync.exchange")


class ExchangeError(CalsyncError):
    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


_adapter_lock = threading.Lock()
_ca_files: dict[str, str] = {}  # host:port -> CA file, for the one adapter class


def _install_adapter(ews_url: str, ca_file: Path | None) -> None:
    """exchangelib builds its own requests sessions; its documented hook for transport
    settings is `BaseProtocol.HTTP_ADAPTER_CLS`. Ours trusts the configured CA for the
    Exchange host and never uses a proxy."""
    import requests.adapters
    from exchangelib.protocol import BaseProtocol

    with _adapter_lock:
        if ca_file is not None:
            from urllib.parse import urlsplit

            _ca_files[urlsplit(ews_url).netloc] = str(ca_file)
        if getattr(BaseProtocol.HTTP_ADAPTER_CLS, "_calsync", False):
            return

        class NoProxyAdapter(requests.adapters.HTTPAdapter):
            _calsync = True

            def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                from urllib.parse import urlsplit

                kwargs["proxies"] = {}
                ca = _ca_files.get(urlsplit(request.url).netloc)
                if ca:
                    kwargs["verify"] = ca
                return super().send(request, **kwargs)

        BaseProtocol.HTTP_ADAPTER_CLS = NoProxyAdapter


class ExchangeMailbox:
    """One user's mailbox. Calls block: run them in a thread."""

    def __init__(self, config: Config, user: UserConfig) -> None:
        if not config.exchange_ews_url:
            raise ExchangeError("[exchange] ews_url is not configured", retryable=False)
        from exchangelib import (
            BASIC,
            DELEGATE,
            IMPERSONATION,
            NTLM,
            Account,
            Configuration,
            Credentials,
            Version,
        )
        from exchangelib.version import EXCHANGE_2016

        _install_adapter(config.exchange_ews_url, config.exchange_ca_file)
        if config.exchange_impersonation_username:
            username = config.exchange_impersonation_username
            password = _secret(config.exchange_impersonation_password_env, "impersonation")
            access_type = IMPERSONATION
        else:
            username = user.exchange_username or user.mailbox
            password = _secret(user.exchange_password_env, user.mailbox)
            access_type = DELEGATE
        configuration = Configuration(
            service_endpoint=config.exchange_ews_url,
            credentials=Credentials(username, password),
            auth_type=NTLM if config.exchange_auth == "ntlm" else BASIC,
            version=Version(build=EXCHANGE_2016),
        )
        self.user = user
        self.account = Account(
            primary_smtp_address=user.mailbox,
            config=configuration,
            autodiscover=False,
            access_type=access_type,
        )

    def calendar_item(self, item_id: str) -> Any | None:
        """The full CalendarItem, or None when Exchange has no such item (or it is not a
        calendar item)."""
        from exchangelib.errors import ErrorItemNotFound
        from exchangelib.items import CalendarItem

        try:
            items = list(self.account.fetch(ids=[(item_id, None)]))
        except ErrorItemNotFound:
            return None
        except Exception as exc:
            raise _exchange_error(exc) from None
        item = items[0] if items else None
        if isinstance(item, ErrorItemNotFound) or not isinstance(item, CalendarItem):
            if isinstance(item, Exception) and not isinstance(item, ErrorItemNotFound):
                raise _exchange_error(item)
            return None
        return item

    def missing(self, item_ids: Sequence[str]) -> set[str]:
        """The ids among `item_ids` Exchange has no item for: GetItem with the IdOnly
        shape, batched by exchangelib. Only ErrorItemNotFound counts as gone; any other
        answer for an id (ErrorAccessDenied, a malformed id, ...) means "unknown" and the
        id is not returned; a request that fails as a whole raises ExchangeError."""
        from exchangelib.errors import ErrorItemNotFound

        if not item_ids:
            return set()
        try:
            asked = [(i, None) for i in item_ids]
            answers = list(self.account.fetch(ids=asked, only_fields=["id"]))
        except ErrorItemNotFound:
            # exchangelib may raise it rather than return it when one id was asked for
            return set(item_ids) if len(item_ids) == 1 else set()
        except Exception as exc:
            raise _exchange_error(exc) from None
        # exchangelib answers in the order asked
        return {
            item_id
            for item_id, answer in zip(item_ids, answers, strict=True)
            if isinstance(answer, ErrorItemNotFound)
        }

    def master_item_id(self, occurrence: Any) -> str | None:
        """The id of the series master of an occurrence or exception read from Exchange."""
        from exchangelib.errors import ErrorItemNotFound

        master = occurrence.recurring_master()
        try:
            master.refresh()
        except ErrorItemNotFound:
            return None
        except Exception as exc:
            raise _exchange_error(exc) from None
        return str(master.id) if master.id else None

    def calendar_items(self, item_ids: list[str]) -> list[Any]:
        """Several items at once (GetItem), skipping any Exchange no longer has."""
        from exchangelib.items import CalendarItem

        if not item_ids:
            return []
        try:
            fetched = list(self.account.fetch(ids=[(i, None) for i in item_ids]))
        except Exception as exc:
            raise _exchange_error(exc) from None
        return [i for i in fetched if isinstance(i, CalendarItem)]

    def calendar_folder_id(self) -> str:
        try:
            return str(self.account.calendar.id)
        except Exception as exc:
            raise _exchange_error(exc) from None


def _secret(env: str | None, who: str) -> str:
    if not env:
        raise ExchangeError(f"{who}: no exchange_password_env configured", retryable=False)
    value = os.environ.get(env)
    if not value:
        raise ExchangeError(f"{who}: the environment variable {env} is not set", retryable=False)
    return value


def _exchange_error(exc: BaseException) -> ExchangeError:
    from exchangelib.errors import (
        ErrorServerBusy,
        RateLimitError,
        TransportError,
        UnauthorizedError,
    )

    name = type(exc).__name__
    if isinstance(exc, ErrorServerBusy | RateLimitError | TransportError):
        return ExchangeError(f"Exchange unavailable: {name}", retryable=True)
    if isinstance(exc, UnauthorizedError):
        return ExchangeError("Exchange refused the credentials", retryable=False)
    if isinstance(exc, OSError | TimeoutError):
        return ExchangeError(f"Exchange unreachable: {name}", retryable=True)
    return ExchangeError(f"Exchange error: {name}", retryable=True)
