"""Calling one Odoo: reads are retried on transient errors (exponential backoff with jitter),
writes are made once and never retried, and a read-back that fails after a write leaves the
outcome to a lookup (OutcomeUnknown).

`OdooCalls` holds the transport and the server's address; the live connector
(daemon/connectors/odoo_live.py) builds invoices and payments on these calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from daemon.connectors.odoo_transport import Transport
from daemon.core.errors import ConnectorError, OutcomeUnknown, TransientError

T = TypeVar("T")

READ_ATTEMPTS = 3  # a read is tried at most this many times, on transient errors only
READ_WAIT = 0.2  # seconds; the backoff multiplier (random, exponential)
READ_WAIT_MAX = 2.0  # seconds; the longest wait between two tries


class OdooCalls:
    """The calls to one Odoo database, through its transport (XML-RPC or JSON-2)."""

    def __init__(
        self,
        transport: Transport,
        *,
        url: str,
        database: str,
        username: str,
        read_wait: float = READ_WAIT,
    ) -> None:
        self.transport = transport
        self.url = url.rstrip("/")
        self.database = database
        self.username = username
        self.read_wait = read_wait

    def invoice_url(self, move_id: int) -> str:
        return f"{self.url}/web#id={move_id}&model=account.move&view_type=form"

    def _retry(self, read: Callable[[], T]) -> T:
        """Run a read, again on transient errors only (exponential backoff with jitter)."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(READ_ATTEMPTS),
            wait=wait_random_exponential(multiplier=self.read_wait, max=READ_WAIT_MAX),
            reraise=True,
        )
        return retrying(read)

    def search_read(
        self,
        model: str,
        domain: list[Any],
        fields: list[str],
        *,
        limit: int | None = None,
        order: str | None = None,
    ) -> list[dict[str, Any]]:
        """Read records (a read: retried on transient errors)."""
        params: dict[str, Any] = {"domain": domain, "fields": fields}
        if limit is not None:
            params["limit"] = limit
        if order is not None:
            params["order"] = order
        found = self._retry(lambda: self.transport.call(model, "search_read", params=params))
        return list(found or [])

    def _create(self, model: str, values: dict[str, Any], **kwargs: Any) -> int:
        created = self._write(model, "create", params={"vals_list": [values]}, **kwargs)
        return int(created[0] if isinstance(created, list) else created)

    def _write(
        self,
        model: str,
        method: str,
        *,
        ids: list[int] | None = None,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> Any:
        """A call that changes Odoo: made once, never retried."""
        return self.transport.call(
            model, method, ids=ids, params=params, context=context, write=True
        )

    def _after_write(self, read: Callable[[], T], done: str) -> T:
        """Read back after a write; a failure here leaves the outcome to a lookup."""
        try:
            return read()
        except ConnectorError as error:
            raise OutcomeUnknown(f"{done}, but reading it back failed: {error}") from None
