"""Adversarial review of completion webhooks: a loopback-only delivery never leaves through
an HTTP proxy the environment names (found by the review of 2026-12-01, fixed)."""

from __future__ import annotations

import http.server
import threading

import pytest

from daemon.agents.webhooks import delivery
from daemon.agents.webhooks.delivery import post
from daemon.core.webhook_config import check_url


def test_review_a_loopback_webhook_never_goes_through_an_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
):
    """check_url allows only loopback, but delivery.post opens it with urllib's default
    ProxyHandler: with HTTP_PROXY set in vaultd's environment (and no NO_PROXY), the signed
    run is sent to the proxy, wherever that is, not to 127.0.0.1."""
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    proxy = http.server.HTTPServer(("127.0.0.2", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.2:{proxy.server_port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        # As vaultd builds it at import when started with http_proxy in its environment.
        monkeypatch.setattr(delivery, "_opener", delivery._build_opener())
        url = check_url("http://127.0.0.1:9/hook")
        post(url, "{}", {"content-type": "application/json"}, 5)
    finally:
        proxy.shutdown()
    assert seen == [], f"the delivery went to the proxy as {seen}"
