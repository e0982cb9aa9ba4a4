"""A stand-in's request body, read as a real HTTP service reads it: whole, or not at all."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def whole_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """Given a handler, return its request's body as long as Content-Length promised, or
    None if the client hung up before sending it all: the connection is then closed, and
    the request must be neither acted on nor counted. urllib3 2 writes a request's headers
    and its body separately, so a kill -9 can fall between the two."""
    length = int(handler.headers.get("Content-Length") or 0)
    body = handler.rfile.read(length)
    if len(body) < length:
        handler.close_connection = True
        return None
    return body
