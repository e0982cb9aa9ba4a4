"""A cap on request bodies, checked before anything reads them.

FastAPI reads a body before it checks credentials, so without a cap anyone who can reach
the port could make the server hold any amount of memory. A run's inputs are small; a
task file may not exceed 1 MiB either.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a declared body over the cap, 411 for an undeclared one."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(dict(scope["headers"]))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> JSONResponse | None:
        # The server makes the body match its declared length, so the header is enough.
        if b"transfer-encoding" in headers:
            return JSONResponse({"error": "send the body with a Content-Length"}, 411)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return JSONResponse(
                {"error": f"request body over {self.limit} bytes (Content-Length {length!r})"},
                413,
            )
        return None
