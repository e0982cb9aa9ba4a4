"""A loopback webhook receiver, as an agent's own service would run one: every POST is
verified with the `standardwebhooks` library (signature, id and timestamp headers) against
the shared secret, and kept with its headers whether it verified or not.

Switches a test sets: `fail_first` answers that many requests 500 first; `gone` answers 410
(unsubscribe); `redirect_to` answers 302 to that URL; `stall_first` holds that many
requests without an answer for `stall_seconds`, then closes them.

Run it on its own (for trying webhooks by hand; prints each delivery):
    python tests/standins/webhooks.py [port] [whsec_…]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

if __name__ == "__main__":  # run as a script: make `standins` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standins.http_body import whole_body

# A test secret: "whsec_" and the base64 of 24 fixed bytes. Never a real one.
TEST_SECRET = "whsec_dmF1bHRkLXRlc3Qtd2ViaG9vay1zZWNyZXQ="  # noqa: S105 (a fake, for tests)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: Any  # the parsed body if the signature verified, else None
    error: str | None


@dataclass
class ReceiverState:
    secret: str = TEST_SECRET
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0
    gone: bool = False
    redirect_to: str | None = None
    stall_first: int = 0
    stall_seconds: float = 30.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def verified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.verified is not None]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` requests arrived (verified or not); return them all."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < count and time.monotonic() < deadline:
                self.arrived.wait(deadline - time.monotonic())
            return list(self.received)


def _handler(state: ReceiverState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = whole_body(self)
            if body is None:
                return  # cut off: never arrived
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verified, error = Webhook(state.secret).verify(body, headers), None
            except WebhookVerificationError as failure:
                verified, error = None, str(failure)
            with state.arrived:
                state.received.append(Received(self.path, headers, body, verified, error))
                number = len(state.received)
                state.arrived.notify_all()
            if number <= state.stall_first:
                time.sleep(state.stall_seconds)
                self.close_connection = True
                return
            if state.redirect_to:
                self._answer(302, {"location": state.redirect_to})
            elif state.gone:
                self._answer(410)
            elif number <= state.fail_first or verified is None:
                self._answer(500 if verified is not None else 401)
            else:
                self._answer(204)

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

    return Handler


class Receiver:
    """A running receiver on 127.0.0.1; `url` is where to post."""

    def __init__(self, state: ReceiverState | None = None, port: int = 0) -> None:
        self.state = state or ReceiverState()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.state))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    state = ReceiverState(secret=sys.argv[2] if len(sys.argv) > 2 else TEST_SECRET)
    with Receiver(state, port) as receiver:
        print(f"listening on {receiver.url}", flush=True)
        seen = 0
        while True:
            for item in state.wait_for(seen + 1, timeout=3600)[seen:]:
                seen += 1
                shown = json.dumps(item.verified) if item.verified is not None else item.error
                print(item.headers.get("webhook-id"), shown, flush=True)
