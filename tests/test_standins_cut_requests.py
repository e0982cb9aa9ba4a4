"""The stand-ins, like a real service, never act on a request whose body never arrived.

urllib3 2 sends a request's headers and its body in separate writes, so a kill -9 can fall
between them: the service then sees the headers and a closed connection. The X stand-in
counted that as a tweet request (the random kill test then saw one "blind" request more
than there were tweets, though vaultd had looked the call up and found it absent first).
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from standins.all import running_all


def cut_post(url: str, path: str) -> None:
    """Send a POST's headers promising 60 bytes of body, 10 of them, then hang up."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {where.hostname}\r\n"
            "Content-Type: application/json\r\nContent-Length: 60\r\n\r\n".encode()
            + b'{"text": '
        )
    time.sleep(0.2)  # the stand-in's thread reads, finds the body cut off, and gives up


def test_a_tweet_request_cut_off_before_its_body_is_neither_counted_nor_made():
    with running_all() as standins:
        cut_post(standins.x.url, "/2/tweets")
        assert standins.x.state.posts() == 0
        assert standins.x.state.tweets == []


def test_a_graph_post_cut_off_before_its_body_is_neither_counted_nor_made():
    with running_all() as standins:
        graph = standins.graph
        path = f"/{graph.version}/{graph.page_id}/feed"
        cut_post(graph.env()["FACEBOOK_GRAPH_URL"], path)
        assert graph.requests.count(("POST", path)) == 0


def test_an_odoo_call_cut_off_before_its_body_is_not_made():
    with running_all() as standins:
        odoo = standins.odoo.odoo
        before = dict(odoo.calls)
        cut_post(standins.odoo.url, "/xmlrpc/2/object")
        assert dict(odoo.calls) == before
