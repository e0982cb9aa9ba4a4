"""The Graph API plumbing shared by the Facebook and Instagram connectors.

Calls go through pyfacebook's `GraphAPI` (base URL and version configurable, its own
sleeping on rate limits off: vaultd defers the action instead of blocking a worker). Every
call has a timeout. Graph errors become vaultd's errors:

- 190, 102, 10 and 200-299 (token, session, permissions) → AuthError
- 4, 17, 32, 613 and 80001-80014 (rate limits) → Deferred, until the time in the
  `Retry-After` or `X-Business-Use-Case-Usage` header, else an hour from now
- 1, 2, `is_transient` and any 5xx → TransientError for reads; for a write that publishes
  the request reached Facebook, so the outcome is unknown (only a lookup can tell)
- any other error (368 blocked, 506 duplicate, 100 invalid parameter, ...) → PermanentError
  with Facebook's own message
- connection refused or a connect timeout → TransientError (nothing was sent); a read
  timeout or dropped connection after a publishing write was sent → OutcomeUnknown

Reads are retried with tenacity (exponential backoff with jitter) on TransientError only;
writes are never retried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
from pyfacebook import FacebookError, GraphAPI, LibraryError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import NewConnectionError

from daemon.connectors.social import DEFAULT_GRAPH_URL, DEFAULT_GRAPH_VERSION
from daemon.core.errors import (
    AuthError,
    ConnectorError,
    Deferred,
    OutcomeUnknown,
    PermanentError,
    TransientError,
)
from daemon.core.settings import Settings

# The query string of a URL inside an error message.
_QUERY = re.compile(r"\?[^\s'\")]*")

RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
AUTH_CODES = frozenset({10, 102, 190, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})
DEFAULT_RATE_LIMIT_WAIT = timedelta(hours=1)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How reads are retried: attempts in all, and the exponential wait with jitter."""

    attempts: int = 3
    initial: float = 0.5
    maximum: float = 4.0
    jitter: float = 0.5


class GraphClient:
    """One page token against one Graph API host and version."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str = DEFAULT_GRAPH_URL,
        version: str = DEFAULT_GRAPH_VERSION,
        timeout: float = 15.0,
        retry: RetryPolicy | None = None,
        service: str = "facebook",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.service = service
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.api = GraphAPI(
            access_token=token,
            version=version,
            base_url=self.base_url,
            timeout=timeout,
            sleep_on_rate_limit=False,
        )
        self.version = str(self.api.version)
        self._last: requests.Response | None = None
        self.api.session.hooks["response"].append(self._keep)

    @classmethod
    def from_settings(cls, settings: Settings, *, service: str, **options: Any) -> GraphClient:
        timeout = settings.call_timeout()
        if timeout is not None:
            options.setdefault("timeout", timeout)
        return cls(
            token=settings.get("FACEBOOK_PAGE_TOKEN") or "",
            base_url=settings.get("FACEBOOK_GRAPH_URL", DEFAULT_GRAPH_URL) or DEFAULT_GRAPH_URL,
            version=settings.get("FACEBOOK_GRAPH_VERSION", DEFAULT_GRAPH_VERSION)
            or DEFAULT_GRAPH_VERSION,
            service=service,
            **options,
        )

    def url(self, path: str) -> str:
        """Return the full URL of a Graph path, as `describe` shows it (no token)."""
        return f"{self.base_url}{self.version}/{path}"

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self._last = response
        return response

    # Reads: retried on TransientError only.
    def read(self, path: str, **params: Any) -> dict[str, Any]:
        """GET a Graph path (object or edge) and return its JSON."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential_jitter(
                multiplier=self.retry.initial, max=self.retry.maximum, jitter=self.retry.jitter
            ),
            reraise=True,
        )
        return retrying(lambda: self._call(lambda: self.api.get(path, dict(params)), write=False))

    # Writes: sent once, never retried.
    def write(self, path: str, data: dict[str, Any], *, publishes: bool = True) -> dict[str, Any]:
        """POST form data to a Graph path and return its JSON.

        `publishes` says whether the write makes something public (a post, a comment, a
        media_publish): if its answer is lost the outcome is unknown. A write that publishes
        nothing (an Instagram container) fails as a TransientError instead.
        """
        return self._call(
            lambda: self.api.post_object(object_id=path, data=dict(data)), write=publishes
        )

    def _call(self, send: Callable[[], dict[str, Any]], *, write: bool) -> dict[str, Any]:
        self._last = None
        try:
            answer = send()
        except FacebookError as error:
            raise self._graph_error(error, write=write) from None
        except LibraryError as error:
            raise self._library_error(error, write=write) from None
        except requests.RequestException as error:
            raise self._transport_error(error, write=write) from None
        except (KeyError, ValueError) as error:  # no Content-Type, or JSON that is not JSON
            text = f"{self.service}: HTTP {self._status()}: malformed answer ({error!r})"
            raise self._server_trouble(text, write=write) from None
        if not isinstance(answer, dict):
            raise PermanentError(f"{self.service}: unexpected answer {answer!r}")
        return answer

    def _status(self) -> int | None:
        return self._last.status_code if self._last is not None else None

    def _graph_error(self, error: FacebookError, *, write: bool) -> ConnectorError:
        details: dict[str, Any] = dict(getattr(error, "_data", {}).get("error") or {})
        code = _int(details.get("code"))
        kind = str(details.get("type") or "")
        message = str(details.get("error_user_msg") or details.get("message") or "error")
        subcode = _int(details.get("error_subcode"))
        text = f"{self.service}: {message} ({kind or 'error'} code {code}"
        text += f", subcode {subcode})" if subcode is not None else ")"
        status = self._status()
        if code in RATE_LIMIT_CODES:
            return Deferred(f"{text}; rate limited", self._retry_at())
        if code in AUTH_CODES or (kind == "OAuthException" and code is None):
            return AuthError(text)
        if code in TRANSIENT_CODES or details.get("is_transient") or (status or 0) >= 500:
            return self._server_trouble(text, write=write)
        return PermanentError(text)

    def _library_error(self, error: LibraryError, *, write: bool) -> ConnectorError:
        status = self._status()
        text = f"{self.service}: HTTP {status}: {getattr(error, 'message', error)}"
        if status is not None and status >= 500:
            return self._server_trouble(text, write=write)
        return PermanentError(text)

    def _server_trouble(self, text: str, *, write: bool) -> ConnectorError:
        if write:
            return OutcomeUnknown(f"{text}; the request reached the server, outcome unknown")
        return TransientError(text)

    def _transport_error(self, error: requests.RequestException, *, write: bool) -> ConnectorError:
        # requests puts the whole URL in its message, and the Graph API's access token
        # travels in the query string: leave the query out.
        text = f"{self.service}: {type(error).__name__}: {_QUERY.sub('?…', str(error))}"
        if _never_sent(error):
            return TransientError(f"{text} (nothing was sent)")
        if write:
            return OutcomeUnknown(f"{text}; the request was sent, outcome unknown")
        return TransientError(text)

    def _retry_at(self) -> datetime:
        """When a rate-limited call may be made again, from the headers if they say."""
        now = self.clock()
        headers = self._last.headers if self._last is not None else {}
        retry_after = headers.get("Retry-After")
        if retry_after and retry_after.strip().isdigit():
            return now + timedelta(seconds=int(retry_after))
        minutes = 0
        for name in ("X-Business-Use-Case-Usage", "X-Ad-Account-Usage", "X-App-Usage"):
            minutes = max(minutes, _regain_minutes(headers.get(name)))
        if minutes > 0:
            return now + timedelta(minutes=minutes)
        return now + DEFAULT_RATE_LIMIT_WAIT


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _regain_minutes(header: str | None) -> int:
    """Return the largest `estimated_time_to_regain_access` (minutes) in a usage header."""
    if not header:
        return 0
    try:
        usage = json.loads(header)
    except ValueError:
        return 0
    found = 0

    def visit(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            value = _int(node.get("estimated_time_to_regain_access"))
            if value:
                found = max(found, value)
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(usage)
    return found


def _never_sent(error: BaseException) -> bool:
    """True when the request cannot have reached the server (refused, no route, DNS)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        node = pending.pop()
        if id(node) in seen or node is None:
            continue
        seen.add(id(node))
        if isinstance(node, NewConnectionError):
            return True
        if isinstance(node, BaseException):
            pending.extend([node.__cause__, node.__context__, getattr(node, "reason", None)])
            pending.extend(arg for arg in node.args if isinstance(arg, BaseException))
    return False


def graph_time(value: str) -> datetime | None:
    """Parse a Graph timestamp such as 2026-11-22T04:30:00+0000."""
    for pattern in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(value, pattern)
        except (TypeError, ValueError):
            continue
    return None
