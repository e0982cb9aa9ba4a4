"""A loopback stand-in for the parts of the X API v2 that vaultd uses.

Routes: POST /2/tweets, GET /2/users/me, GET /2/users/:id/tweets and
POST /2/dm_conversations/with/:participant_id/messages, answering with the JSON shapes X
uses. Requests must carry an OAuth 1.0a Authorization header with the expected consumer key
(else 401). Switches make it fail as X does: a duplicate tweet (403 with X's message), a rate
limit (429 with x-rate-limit-reset), 5xx answers on reads, and a tweet that is created but
whose answer is lost: the connection is closed without a response (`drop_after_accept`), or
held without one for `stall_seconds`, past the client's timeout, first (`stall_after_accept`);
the same for a DM (`drop_dms`, `stall_dms`). `latency_s` sends every answer that long after
the work is done.

Run it on its own (for trying `vaultd run --live` by hand):
    python tests/standins/x_api.py [port]
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

if __name__ == "__main__":  # run as a script: make `standins` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standins.http_body import whole_body

CONSUMER_KEY = "x-test-consumer-key"
USER = {"id": "1700000000000000001", "name": "vaultd test", "username": "vaultd_test"}
DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
_URL = re.compile(r"https?://\S+")


@dataclass
class Tweet:
    id: str
    text: str  # as X stores it: links shortened to t.co
    created_at: datetime
    in_reply_to: str | None = None


@dataclass
class XState:
    consumer_key: str = CONSUMER_KEY
    tweets: list[Tweet] = field(default_factory=list)
    dms: list[dict[str, Any]] = field(default_factory=list)
    # Every request that reached the stand-in, as (method, path).
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Switches a test sets.
    rate_limit_reset: int | None = None  # answer writes with 429 and this reset time
    rate_limited: bool = False  # answer writes with 429 (header only if reset is set)
    read_failures: int = 0  # answer this many reads with 500 first
    write_failures: int = 0  # answer this many writes with 503 first
    drop_after_accept: int = 0  # create this many tweets, then close without answering
    stall_after_accept: int = 0  # create this many tweets, then answer nothing for a while
    stall_seconds: float = 60.0  # how long such a tweet's connection is held, then closed
    drop_dms: int = 0  # send this many DMs, then close without answering
    stall_dms: int = 0  # send this many DMs, then answer nothing for stall_seconds
    latency_s: float = 0.0  # every answer leaves this long after the work is done
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1800000000000000001))

    def posts(self) -> int:
        return sum(1 for method, path in self.requests if (method, path) == ("POST", "/2/tweets"))


def shorten(text: str) -> str:
    """Return the text as X stores it: every link becomes a t.co link."""
    return _URL.sub(lambda m: f"https://t.co/{abs(hash(m.group())) % 10**10:010d}", text)


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"title": title, "detail": detail, "type": "about:blank", "status": status}


class _Handler(BaseHTTPRequestHandler):
    server: XServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        """Queue an answer: `_flush` sends it once the request is handled (outside the lock)."""
        self._replies.append((status, body, headers))

    def _flush(self) -> None:
        """Send the queued answers, `latency_s` after the work was done."""
        replies, self._replies = self._replies, []
        if replies and self.server.state.latency_s:
            self.server.stopped.wait(self.server.state.latency_s)
        for status, body, headers in replies:
            self._write(status, body, headers)

    def _write(self, status: int, body: dict[str, Any], headers: dict[str, str] | None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        match = re.search(r'oauth_consumer_key="([^"]*)"', header)
        ok = (
            header.startswith("OAuth ")
            and "oauth_signature=" in header
            and "oauth_token=" in header
            and match is not None
            and unquote(match.group(1)) == self.server.state.consumer_key
        )
        if not ok:
            self._send(401, _problem(401, "Unauthorized", "Unauthorized"))
        return ok

    def _body(self) -> dict[str, Any]:
        data = json.loads(self._raw or b"{}")
        return data if isinstance(data, dict) else {}

    # -- routes -----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._replies: list[tuple[int, dict[str, Any], dict[str, str] | None]] = []
        self._get()
        self._flush()

    def _get(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        with self.server.lock:
            state.requests.append(("GET", url.path))
            if not self._authorized():
                return
            if state.read_failures:
                state.read_failures -= 1
                self._send(500, _problem(500, "Internal Server Error", "Internal error"))
                return
            if url.path == "/2/users/me":
                self._send(200, {"data": USER})
                return
            match = re.fullmatch(r"/2/users/(\d+)/tweets", url.path)
            if match and match.group(1) == USER["id"]:
                self._timeline(parse_qs(url.query))
                return
        self._send(404, _problem(404, "Not Found Error", f"no route for {url.path}"))

    def _timeline(self, query: dict[str, list[str]]) -> None:
        tweets = sorted(self.server.state.tweets, key=lambda t: int(t.id), reverse=True)
        if "start_time" in query:
            since = datetime.fromisoformat(query["start_time"][0].replace("Z", "+00:00"))
            tweets = [t for t in tweets if t.created_at >= since]
        size = int(query.get("max_results", ["10"])[0])
        start = int(query.get("pagination_token", ["0"])[0])
        page = tweets[start : start + size]
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta |= {"newest_id": page[0].id, "oldest_id": page[-1].id}
        if start + size < len(tweets):
            meta["next_token"] = str(start + size)
        body: dict[str, Any] = {"meta": meta}
        if page:
            body["data"] = [
                {
                    "id": t.id,
                    "text": t.text,
                    "created_at": t.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "edit_history_tweet_ids": [t.id],
                }
                for t in page
            ]
        self._send(200, body)

    def do_POST(self) -> None:
        self._stall: float | None = None
        self._replies = []
        raw = whole_body(self)
        if raw is None:  # the client died mid-request: X never took it
            return
        self._raw = raw
        self._post()
        self._flush()
        if self._stall is not None:  # outside the lock: reads are still answered meanwhile
            self.server.stopped.wait(self._stall)
            self.close_connection = True

    def _post(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        with self.server.lock:
            state.requests.append(("POST", url.path))
            if not self._authorized():
                return
            body = self._body()
            if state.write_failures:
                state.write_failures -= 1
                self._send(503, _problem(503, "Service Unavailable", "Service Unavailable"))
                return
            if state.rate_limited or state.rate_limit_reset is not None:
                headers = {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0"}
                if state.rate_limit_reset is not None:
                    headers["x-rate-limit-reset"] = str(state.rate_limit_reset)
                self._send(429, _problem(429, "Too Many Requests", "Too Many Requests"), headers)
                return
            if url.path == "/2/tweets":
                self._create_tweet(body)
                return
            match = re.fullmatch(r"/2/dm_conversations/with/(\d+)/messages", url.path)
            if match:
                event = str(next(state.ids))
                state.dms.append({"id": event, "to": match.group(1), "text": body.get("text")})
                if state.drop_dms:
                    state.drop_dms -= 1
                    self.close_connection = True
                    return  # the DM is sent, but the client never hears so
                if state.stall_dms:
                    state.stall_dms -= 1
                    self._stall = state.stall_seconds
                    return
                conversation = f"{USER['id']}-{match.group(1)}"
                self._send(
                    201, {"data": {"dm_conversation_id": conversation, "dm_event_id": event}}
                )
                return
        self._send(404, _problem(404, "Not Found Error", f"no route for {url.path}"))

    def _create_tweet(self, body: dict[str, Any]) -> None:
        state = self.server.state
        text = body.get("text")
        if not isinstance(text, str) or not text:
            detail = "One or more parameters to your request was invalid."
            self._send(400, {**_problem(400, "Invalid Request", detail), "errors": []})
            return
        stored = shorten(text)
        if any(t.text == stored for t in state.tweets):
            self._send(403, _problem(403, "Forbidden", DUPLICATE))
            return
        reply = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        tweet = Tweet(str(next(state.ids)), stored, datetime.now(UTC), reply)
        state.tweets.append(tweet)
        if state.drop_after_accept:
            state.drop_after_accept -= 1
            self.close_connection = True
            return  # the tweet exists, but the client never hears so
        if state.stall_after_accept:
            state.stall_after_accept -= 1
            self._stall = state.stall_seconds
            return  # the tweet exists; the client waits for an answer that never comes
        self._send(
            201, {"data": {"id": tweet.id, "text": text, "edit_history_tweet_ids": [tweet.id]}}
        )


class XServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = XState()
        self.lock = threading.Lock()
        self.stopped = threading.Event()  # ends stalls early when the stand-in stops
        self._thread: threading.Thread | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed vaultd, a timed-out call) is not an error here."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> XServer:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    server = XServer(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"X API stand-in on {server.url} (consumer key {CONSUMER_KEY})")
    server.serve_forever()
