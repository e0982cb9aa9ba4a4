"""A loopback stand-in for the Graph API (Facebook Page and Instagram publishing).

Stdlib `http.server` in a thread on 127.0.0.1, serving `/{version}/...` for the endpoints
vaultd uses, with the JSON shapes and error bodies the Graph API returns. Switches on the
instance make it misbehave the way the real one does; counters let tests assert "once".
A publishing write can lose its answer: `drop_after_post` / `drop_posts` (done, then the
connection drops) and `stall_posts` (done, then no answer for `stall_seconds`, past the
client's timeout, then the connection drops); these apply to every publishing write: page
posts, comments, Page messages, Instagram comment replies and `media_publish`. `latency_s`
sends every answer that long after the work is done.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from standins.http_body import whole_body

TOKEN = "EAAGstandInPageToken0123456789"  # noqa: S105 - a test token
PAGE_ID = "104000000000001"
IG_ID = "17841400000000001"
VERSION = "v25.0"


def graph_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Container:
    id: str
    image_url: str
    caption: str
    status: str = "IN_PROGRESS"
    reads: int = 0


@dataclass
class GraphStandIn:
    token: str = TOKEN
    page_id: str = PAGE_ID
    ig_id: str = IG_ID
    version: str = VERSION
    page_name: str = "Vaultd Test Page"
    # What was created, for "exactly once" assertions.
    posts: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    containers: dict[str, Container] = field(default_factory=dict)
    media: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Switches.
    rate_limit_code: int | None = None  # 4 (app) or 32 (page): every call is refused
    regain_minutes: int | None = None  # sent in X-Business-Use-Case-Usage when rate limited
    container_mode: str = "finish"  # finish | in_progress | error
    reads_to_finish: int = 1  # status reads that still say IN_PROGRESS
    quota_usage: int = 0
    quota_total: int = 100
    fail_reads: int = 0  # the next N GETs answer 500 (code 2, is_transient)
    drop_after_post: bool = False  # accept the next publishing POST, then drop the connection
    drop_posts: int = 0  # the same for this many of the next publishing POSTs
    stall_posts: int = 0  # accept this many publishing POSTs, then answer nothing ...
    stall_seconds: float = 60.0  # ... for this long, and drop the connection
    latency_s: float = 0.0  # every answer leaves this long after the work is done

    def __post_init__(self) -> None:
        self._ids = itertools.count(7_000_000_001)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()  # ends stalls early when the stand-in stops

    # Lifecycle.
    def start(self) -> GraphStandIn:
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> GraphStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """The settings that point vaultd at this stand-in."""
        return {
            "FACEBOOK_PAGE_ID": self.page_id,
            "FACEBOOK_PAGE_TOKEN": self.token,
            "INSTAGRAM_ACCOUNT_ID": self.ig_id,
            "FACEBOOK_GRAPH_URL": self.url,
            "FACEBOOK_GRAPH_VERSION": self.version,
        }

    def seed_post(self, message: str, age: timedelta) -> str:
        """Add an older post to the page feed (it was there before vaultd)."""
        post_id = f"{self.page_id}_{next(self._ids)}"
        created = graph_time(datetime.now(UTC) - age)
        self.posts.append({"id": post_id, "message": message, "created_time": created})
        return post_id

    def published(self) -> list[dict[str, Any]]:
        return list(self.media)

    def publishing_posts(self) -> int:
        """How many publishing writes (page posts, comments, messages, media_publish) arrived."""
        return sum(
            1
            for method, path in self.requests
            if method == "POST" and path.rsplit("/", 1)[-1] in PUBLISHING_EDGES
        )

    def stall(self, seconds: float) -> None:
        """Hold a connection without answering (returns early when the stand-in stops)."""
        self._stopped.wait(seconds)

    # Request handling: returns (status, body, headers), None to drop the connection, or
    # Stall to hold it without an answer first.
    def handle(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | Stall | None:
        with self._lock:
            self.requests.append((method, path))
            parts = [unquote(p) for p in path.split("/") if p]  # "a%2Fb" is one object
            if not parts or parts[0] != self.version:
                return _error(400, "Unknown path components", "OAuthException", 2500)
            if params.get("access_token") != self.token:
                return _error(
                    400,
                    "Invalid OAuth access token - Cannot parse access token",
                    "OAuthException",
                    190,
                )
            if self.rate_limit_code is not None:
                return self._rate_limited()
            if method == "GET" and self.fail_reads > 0:
                self.fail_reads -= 1
                body = _error(
                    500, "An unexpected error has occurred. Please retry.", "OAuthException", 2
                )
                body[1]["error"]["is_transient"] = True
                return body
            node, edge = parts[1], (parts[2] if len(parts) > 2 else None)
            if method == "GET":
                return self._get(node, edge, params)
            return self._post(node, edge, params)

    def _rate_limited(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        code = self.rate_limit_code or 4
        message = {
            4: "(#4) Application request limit reached",
            32: "(#32) Page request limit reached",
        }.get(code, "(#17) User request limit reached")
        status, body, headers = _error(403, message, "OAuthException", code)
        if self.regain_minutes is not None:
            usage = {
                self.page_id: [
                    {
                        "type": "pages",
                        "call_count": 100,
                        "total_cputime": 20,
                        "total_time": 30,
                        "estimated_time_to_regain_access": self.regain_minutes,
                    }
                ]
            }
            headers["X-Business-Use-Case-Usage"] = json.dumps(usage)
        else:
            headers["X-App-Usage"] = json.dumps(
                {"call_count": 100, "total_cputime": 10, "total_time": 12}
            )
        return status, body, headers

    def _get(
        self, node: str, edge: str | None, params: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if edge is None:
            if node in ("me", self.page_id):
                return _ok({"id": self.page_id, "name": self.page_name})
            if node == self.ig_id:
                return _ok({"id": self.ig_id, "username": "vaultd_test"})
            container = self.containers.get(node)
            if container is not None:
                container.reads += 1
                if container.status == "IN_PROGRESS":
                    if self.container_mode == "error":
                        container.status = "ERROR"
                    elif self.container_mode == "finish" and container.reads > self.reads_to_finish:
                        container.status = "FINISHED"
                body: dict[str, Any] = {"id": node, "status_code": container.status}
                if container.status == "ERROR":
                    body["status"] = "Error: Media download has failed. (2207003)"
                return _ok(body)
            return _no_object(node)
        if node == self.page_id and edge == "feed":
            items = sorted(self.posts, key=lambda p: p["created_time"], reverse=True)
            return self._listing(node, edge, items, params)
        if edge == "comments":
            items = list(self.comments.get(node, []))
            if params.get("order") == "reverse_chronological":
                items.reverse()
            return self._listing(node, edge, items, params)
        if node == self.ig_id and edge == "content_publishing_limit":
            return _ok(
                {
                    "data": [
                        {
                            "quota_usage": self.quota_usage,
                            "config": {"quota_total": self.quota_total, "quota_duration": 86400},
                        }
                    ]
                }
            )
        if node == self.ig_id and edge == "media":
            return self._listing(node, edge, list(reversed(self.media)), params)
        return _no_object(node)

    def _listing(
        self, node: str, edge: str, items: list[dict[str, Any]], params: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        limit = int(params.get("limit", 25))
        start = int(params.get("after", 0))
        page = items[start : start + limit]
        body: dict[str, Any] = {"data": page}
        if page:
            body["paging"] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
            if start + len(page) < len(items):
                query = {**params, "after": str(start + len(page))}
                query.pop("access_token", None)
                body["paging"]["next"] = (
                    f"{self.url}/{self.version}/{node}/{edge}?{urlencode(query)}"
                )
        return _ok(body)

    def _post(
        self, node: str, edge: str | None, params: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | Stall | None:
        now = graph_time(datetime.now(UTC))
        if node == self.page_id and edge == "feed":
            if not params.get("message") and not params.get("link"):
                return _error(400, "(#100) Missing message or attachment", "OAuthException", 100)
            if any(p["message"] == params.get("message") for p in self.posts[-1:]):
                return _error(400, "(#506) Duplicate status message", "OAuthException", 506)
            post_id = f"{self.page_id}_{next(self._ids)}"
            post = {"id": post_id, "message": params.get("message"), "created_time": now}
            if params.get("link"):
                post["link"] = params["link"]
            self.posts.append(post)
            return self._answer({"id": post_id})
        if edge == "comments":
            if "_" not in node:
                return _no_object(node)
            comment_id = f"{node.split('_')[1]}_{next(self._ids)}"
            comment = {"id": comment_id, "message": params.get("message"), "created_time": now}
            self.comments.setdefault(node, []).append(comment)
            return self._answer({"id": comment_id})
        if edge == "replies" and node.isdigit():  # a reply to an Instagram comment
            reply_id = str(next(self._ids))
            reply = {"id": reply_id, "text": params.get("message"), "timestamp": now}
            self.comments.setdefault(node, []).append(reply)
            return self._answer({"id": reply_id})
        if node == self.page_id and edge == "messages":
            recipient = json.loads(params.get("recipient", "{}"))
            message_id = f"m_{next(self._ids)}"
            self.messages.append({**params, "id": message_id, "recipient": recipient})
            return self._answer({"recipient_id": recipient.get("id"), "message_id": message_id})
        if node == self.ig_id and edge == "media":
            if not params.get("image_url"):
                return _error(
                    400, "(#100) The parameter image_url is required", "OAuthException", 100
                )
            container_id = str(next(self._ids))
            self.containers[container_id] = Container(
                container_id, params["image_url"], params.get("caption", "")
            )
            return _ok({"id": container_id})
        if node == self.ig_id and edge == "media_publish":
            container = self.containers.get(params.get("creation_id", ""))
            if container is None or container.status != "FINISHED":
                return _error(
                    400, "Media ID is not available", "OAuthException", 9007, subcode=2207027
                )
            if self.quota_usage >= self.quota_total:
                return _error(
                    400, "Application request limit reached", "OAuthException", 9, subcode=2207042
                )
            media_id = str(next(self._ids))
            container.status = "PUBLISHED"
            self.quota_usage += 1
            self.media.append({"id": media_id, "caption": container.caption, "timestamp": now})
            return self._answer({"id": media_id})
        return _no_object(node)

    def _answer(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]] | Stall | None:
        """The answer to a publishing write; when switched, None (the connection drops) or a
        Stall (no answer for a while, then the connection drops)."""
        if self.drop_after_post:
            self.drop_after_post = False
            return None
        if self.drop_posts > 0:
            self.drop_posts -= 1
            return None
        if self.stall_posts > 0:
            self.stall_posts -= 1
            return Stall(self.stall_seconds)
        return _ok(body)


@dataclass(frozen=True)
class Stall:
    """The write was done; hold the connection this long without answering, then drop it."""

    seconds: float


PUBLISHING_EDGES = frozenset({"feed", "comments", "messages", "replies", "media_publish"})


def _ok(body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    return 200, body, {}


def _error(
    status: int, message: str, kind: str, code: int, *, subcode: int | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEfStandIn"
    return status, {"error": error}, {"WWW-Authenticate": f'OAuth "Facebook Platform" "{kind}"'}


def _no_object(node: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return _error(
        400,
        f"Unsupported get request. Object with ID '{node}' does not exist, cannot be loaded"
        " due to missing permissions, or does not support this operation.",
        "GraphMethodException",
        100,
        subcode=33,
    )


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed vaultd, a timed-out call) is not an error here."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler(standin: GraphStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            params = dict(parse_qsl(split.query))
            if method == "POST":
                raw = whole_body(self)
                if raw is None:  # the client died mid-request: Graph never took it
                    return
                params.update(parse_qsl(raw.decode("utf-8")))
            answer = standin.handle(method, split.path, params)
            if standin.latency_s:  # outside the lock: the work is done, the answer is slow
                standin.stall(standin.latency_s)
            if isinstance(answer, Stall):  # outside the lock: other requests still answer
                standin.stall(answer.seconds)
                answer = None
            if answer is None:
                self.close_connection = True  # the request was processed; no answer comes
                return
            status, body, headers = answer
            payload = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
