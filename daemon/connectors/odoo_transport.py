"""The two ways of calling Odoo's models from outside: XML-RPC and the JSON-2 API.

Both take the same call — model, method, record ids, named parameters, context — and turn
Odoo's errors into vaultd's: AuthError (access denied), PermanentError (validation, user
error, missing record), TransientError (the service is down or overloaded and did not do the
work) and OutcomeUnknown (a write was sent and its answer was lost: only a lookup can tell).

Neither transport ever re-sends a request by itself: the standard library's XML-RPC client
retries once on a reset connection, which is switched off here, and `requests` does not retry
unless told to.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import xmlrpc.client
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from daemon.connectors.paths import path as url_path
from daemon.core.errors import (
    AuthError,
    ConnectorError,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)

CONNECT_TIMEOUT = 5.0  # seconds to open a connection
CALL_TIMEOUT = 30.0  # seconds to wait for Odoo's answer to one call

# Odoo's XML-RPC fault codes (odoo/addons/base/controllers/rpc.py).
FAULT_APPLICATION_ERROR = 1  # any other exception; the string is a traceback
FAULT_WARNING = 2  # UserError, ValidationError, MissingError, RedirectWarning
FAULT_ACCESS_DENIED = 3  # AccessDenied: wrong login or password
FAULT_ACCESS_ERROR = 4  # AccessError: the user may not do this


class Transport(Protocol):
    protocol: str

    def version(self) -> dict[str, Any]: ...

    def authenticate(self) -> int: ...

    def call(
        self,
        model: str,
        method: str,
        *,
        ids: list[int] | None = None,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        write: bool = False,
    ) -> Any: ...


class _NotSent(Exception):
    """The connection could not be opened: nothing reached Odoo."""


def odoo_message(text: str) -> str:
    """Return the useful part of an Odoo error: the last line of a traceback, or the text."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Traceback"):
        return lines[-1]
    return text.strip()


def _after_send(what: str, error: BaseException, *, write: bool) -> ConnectorError:
    """The error for a connection that failed once the request may have been sent."""
    if write:
        return OutcomeUnknown(
            f"Odoo {what}: the request was sent but its answer was lost ({error}); "
            "it may have been done"
        )
    return TransientError(f"Odoo {what}: {error}")


def _http_status(what: str, status: int, message: str, *, write: bool) -> ConnectorError:
    """Classify an HTTP error status that carries no Odoo error object."""
    if status in (401, 403):
        return AuthError(f"Odoo {what}: {status} {message}")
    if status in (502, 503, 429) or (status >= 500 and not write):
        return TransientError(f"Odoo {what}: {status} {message}")
    if status >= 500:  # a gateway timeout or crash after a write may have committed it
        return OutcomeUnknown(f"Odoo {what}: {status} {message}; the write may have been done")
    return PermanentError(f"Odoo {what}: {status} {message}")


# -- XML-RPC -------------------------------------------------------------------------------


class _OnceTransport(xmlrpc.client.Transport):
    """The stdlib transport with timeouts, an eager connect, and no silent second attempt."""

    def __init__(self, *, secure: bool, call_timeout: float | None = None) -> None:
        super().__init__()
        self.secure = secure
        self.call_timeout = call_timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        cached_host, cached = self._connection
        if cached is not None and host == cached_host:
            return cached
        chost, self._extra_headers, _ = self.get_host_info(host)
        connection: http.client.HTTPConnection
        if self.secure:
            connection = http.client.HTTPSConnection(
                chost, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(chost, timeout=CONNECT_TIMEOUT)
        try:
            connection.connect()
        except OSError as error:
            connection.close()
            raise _NotSent(str(error)) from error
        connection.sock.settimeout(self.call_timeout or CALL_TIMEOUT)
        self._connection = host, connection
        return connection

    def request(
        self, host: Any, handler: str, request_body: Any, verbose: bool = False
    ) -> tuple[Any, ...]:
        # xmlrpc.client.Transport.request re-sends once on a reset connection: never here.
        return self.single_request(host, handler, request_body, verbose)


_POSITIONAL = {
    "create": "vals_list",
    "search": "domain",
    "search_read": "domain",
    "search_count": "domain",
}


class XmlRpcTransport:
    """`/xmlrpc/2/common` (version, authenticate) and `/xmlrpc/2/object` (execute_kw)."""

    protocol = "xmlrpc"

    def __init__(
        self,
        url: str,
        database: str,
        username: str,
        password: str,
        *,
        call_timeout: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.username = username
        self._password = password
        self._uid: int | None = None
        self.call_timeout = call_timeout  # None: CALL_TIMEOUT

    def _proxy(self, service: str) -> xmlrpc.client.ServerProxy:
        transport = _OnceTransport(
            secure=urlsplit(self.url).scheme == "https", call_timeout=self.call_timeout
        )
        return xmlrpc.client.ServerProxy(
            f"{self.url}/xmlrpc/2/{service}", transport=transport, allow_none=True
        )

    def _send(self, what: str, service: str, method: str, *args: Any, write: bool) -> Any:
        try:
            return getattr(self._proxy(service), method)(*args)
        except xmlrpc.client.Fault as fault:
            message = odoo_message(str(fault.faultString))
            if fault.faultCode in (FAULT_ACCESS_DENIED, FAULT_ACCESS_ERROR):
                raise AuthError(f"Odoo {what}: {message}") from None
            raise PermanentError(f"Odoo {what}: {message}") from None
        except xmlrpc.client.ProtocolError as error:
            raise _http_status(what, error.errcode, error.errmsg, write=write) from None
        except _NotSent as error:
            raise TransientError(f"Odoo {what}: cannot connect to {self.url}: {error}") from None
        except (OSError, http.client.HTTPException, xmlrpc.client.ResponseError) as error:
            raise _after_send(what, error, write=write) from None

    def version(self) -> dict[str, Any]:
        answer = self._send("version", "common", "version", write=False)
        return dict(answer) if isinstance(answer, dict) else {}

    def authenticate(self) -> int:
        uid = self._send(
            "authenticate",
            "common",
            "authenticate",
            self.database,
            self.username,
            self._password,
            {},
            write=False,
        )
        if not uid:
            raise AuthError(
                f"Odoo refused the login {self.username!r} on database {self.database!r} "
                "(wrong user, password or API key)"
            )
        self._uid = int(uid)
        return self._uid

    def call(
        self,
        model: str,
        method: str,
        *,
        ids: list[int] | None = None,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        write: bool = False,
    ) -> Any:
        uid = self._uid if self._uid is not None else self.authenticate()
        args: list[Any] = [ids] if ids is not None else []
        kwargs = dict(params or {})
        # Odoo's RPC dispatch (call_kw) needs create's values and search's domain by position.
        first = _POSITIONAL.get(method)
        if ids is None and first in kwargs:
            args = [kwargs.pop(first)]
        if context:
            kwargs["context"] = context
        return self._send(
            f"{model}.{method}",
            "object",
            "execute_kw",
            self.database,
            uid,
            self._password,
            model,
            method,
            args,
            kwargs,
            write=write,
        )


# -- JSON-2 --------------------------------------------------------------------------------

_TRANSIENT_NAMES = ("psycopg2.errors.SerializationFailure", "psycopg2.OperationalError")


class Json2Transport:
    """`POST /json/2/<model>/<method>` with a bearer API key (Odoo 19 and later)."""

    protocol = "json2"

    def __init__(
        self,
        url: str,
        database: str,
        username: str,
        api_key: str,
        *,
        call_timeout: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.username = username
        self.call_timeout = call_timeout  # None: CALL_TIMEOUT
        self._session = requests.Session()
        self._session.headers.update(
            {
                "Authorization": f"bearer {api_key}",
                "X-Odoo-Database": database,
                "User-Agent": "vaultd",
            }
        )

    def _send(self, what: str, method: str, path: str, body: Any, *, write: bool) -> Any:
        try:
            response = self._session.request(
                method,
                f"{self.url}{path}",
                json=body,
                timeout=(CONNECT_TIMEOUT, self.call_timeout or CALL_TIMEOUT),
            )
        except requests.ConnectTimeout as error:
            raise TransientError(f"Odoo {what}: cannot connect to {self.url}: {error}") from None
        except requests.ConnectionError as error:
            if _not_sent(error):
                raise TransientError(
                    f"Odoo {what}: cannot connect to {self.url}: {error}"
                ) from None
            raise _after_send(what, error, write=write) from None
        except requests.RequestException as error:  # read timeout, broken body
            raise _after_send(what, error, write=write) from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError as error:
                raise _after_send(what, error, write=write) from None
        raise _json2_error(what, response, write=write)

    def version(self) -> dict[str, Any]:
        answer = self._send("version", "GET", "/web/version", None, write=False)
        return dict(answer) if isinstance(answer, dict) else {}

    def authenticate(self) -> int:
        context = self.call("res.users", "context_get")
        return int(context.get("uid", 0)) if isinstance(context, dict) else 0

    def call(
        self,
        model: str,
        method: str,
        *,
        ids: list[int] | None = None,
        params: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        write: bool = False,
    ) -> Any:
        body = dict(params or {})
        if ids is not None:
            body["ids"] = ids
        if context:
            body["context"] = context
        return self._send(
            f"{model}.{method}", "POST", f"/json/2/{url_path(model, method)}", body, write=write
        )


def _not_sent(error: requests.ConnectionError) -> bool:
    """True if the connection failed before any byte of the request left."""
    cause: BaseException | None = error
    while cause is not None:
        name = type(cause).__name__
        if name in ("NewConnectionError", "NameResolutionError") or isinstance(
            cause, ConnectionRefusedError | socket.gaierror
        ):
            return True
        args = getattr(cause, "args", ())
        nested = [a for a in args if isinstance(a, BaseException)]
        cause = getattr(cause, "reason", None) or (nested[0] if nested else cause.__cause__)
    return False


def _json2_error(what: str, response: requests.Response, *, write: bool) -> ConnectorError:
    """Turn a JSON-2 error answer into a vaultd error carrying Odoo's message."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "message" not in body:
        text = body if isinstance(body, str) else response.reason or response.text[:200]
        return _http_status(what, status, str(text), write=write)
    # Odoo answered with its error object: the transaction was rolled back.
    name = str(body.get("name", ""))
    message = f"Odoo {what}: {odoo_message(str(body['message']))}"
    if status in (401, 403) or name.endswith(("AccessDenied", "AccessError", "Unauthorized")):
        return AuthError(message)
    if name in _TRANSIENT_NAMES or status in (502, 503, 429):
        return TransientError(message)
    return PermanentError(message)


def transport_for(
    protocol: str,
    url: str,
    database: str,
    username: str,
    password: str,
    *,
    call_timeout: float | None = None,
) -> Transport:
    if protocol == "json2":
        return Json2Transport(url, database, username, password, call_timeout=call_timeout)
    return XmlRpcTransport(url, database, username, password, call_timeout=call_timeout)
